"""Figures of probe streams (upgrade_demo.probe_stats) and the demo's report rows
(upgrade_demo.report), from records made up here: the arithmetic, not the network."""

from __future__ import annotations

from collections.abc import Sequence

from upgrade_demo.probe import LOST, ProberUsage, StreamRecords, parse_run
from upgrade_demo.probe_stats import (
    Window,
    answering_versions,
    figures,
    handover_gap_ms,
    reply_times_ns,
)
from upgrade_demo.report import records, table, target_met
from upgrade_demo.run import MethodRun
from upgrade_demo.workloads import method_named

MS = 1_000_000


USAGE = ProberUsage(cpu_user_ns=30 * MS, cpu_sys_ns=10 * MS, wall_ns=1000 * MS, requests=40,
                    realtime=True, max_in_flight=100, peak_in_flight=2)


def stream(latencies_ms: Sequence[float | None], versions: list[int] | None = None,
           protocol: str = "tcp", lateness_ms: list[float] | None = None) -> StreamRecords:
    """One request a millisecond, sent 0.01 ms late unless told; None is a lost request."""
    rec = StreamRecords(protocol, 1000.0, versions=["v1", "v2"])
    for i, lat in enumerate(latencies_ms):
        rec.due_ns.append(i * MS)
        rec.lateness_ns.append(int((lateness_ms[i] if lateness_ms else 0.01) * MS))
        rec.latency_ns.append(LOST if lat is None else int(lat * MS))
        rec.version.append(-1 if lat is None else (versions[i] if versions else 0))
    return rec


def test_an_undisturbed_stream_has_gaps_of_its_interval() -> None:
    found = figures(stream([0.1] * 100))
    assert (found.sent, found.lost, found.max_gap_ms) == (100, 0, 1.0)
    assert found.p99_ms == 0.1


def test_lost_requests_and_late_replies_make_the_gap() -> None:
    lat: list[float | None] = [0.1] * 50 + [None] * 5 + [0.1] * 45
    found = figures(stream(lat))
    assert found.lost == 5 and found.max_gap_ms == 6.0  # replies at 49.1 ms, then at 55.1 ms
    late = figures(stream([0.1] * 50 + [4.0] + [0.1] * 49))
    assert late.lost == 0 and late.max_latency_ms == 4.0
    # one slow request leaves no hole: the next ones answer meanwhile (49.1 ms -> 51.1 ms)
    assert late.max_gap_ms == 2.0


def test_lost_requests_are_counted_by_their_reason_within_the_window() -> None:
    rec = stream([0.1] * 4 + [None] * 3 + [0.1] * 3)
    rec.failures = [(4, "timeout"), (5, "closed"), (6, "timeout")]
    assert figures(rec).lost_by_reason == {"timeout": 2, "closed": 1}
    assert figures(rec, Window(5 * MS)).lost_by_reason == {"closed": 1, "timeout": 1}
    assert figures(rec, Window(0, 4 * MS)).lost_by_reason == {}


def test_windows_select_requests_by_when_they_were_due() -> None:
    rec = stream([0.1] * 10 + [None] * 10 + [0.1] * 10)
    assert figures(rec, Window(0, 10 * MS)).lost == 0
    assert figures(rec, Window(10 * MS)).lost == 10
    assert reply_times_ns(rec, Window(20 * MS)) == [i * MS + MS // 10 for i in range(20, 30)]


def test_send_lateness_is_the_probers_own_part_per_window() -> None:
    rec = stream([0.5] * 10, lateness_ms=[0.01] * 5 + [0.3] + [0.01] * 4)
    assert figures(rec, Window(0, 5 * MS)).lateness_max_ms == 0.01
    found = figures(rec)
    assert (found.lateness_max_ms, found.max_latency_ms) == (0.3, 0.5)


def test_the_probers_output_parses_into_records_and_its_usage() -> None:
    rec = stream([0.1, None])
    run = parse_run({"streams": {"pod-ip/tcp": rec.to_json()}, "cpu_user_ns": 3000,
                     "cpu_sys_ns": 1000, "wall_ns": 40_000, "realtime": False,
                     "max_in_flight": 10, "peak_in_flight": 1})
    assert run.streams["pod-ip/tcp"] == rec
    assert (run.usage.requests, run.usage.cpu_percent, run.usage.cpu_us_per_request) == (
        2, 10.0, 2.0)


def test_versions_in_the_order_they_first_answered() -> None:
    assert answering_versions(stream([0.1] * 4, versions=[0, 0, 1, 1])) == ["v1", "v2"]


def test_the_handover_gap_ends_at_the_new_versions_first_reply() -> None:
    rec = stream([0.1] * 3 + [None] * 2 + [0.1] * 3, versions=[0, 0, 0, -1, -1, 1, 1, 1])
    assert handover_gap_ms(rec) == 3.0  # 2.1 ms (last v1) -> 5.1 ms (first v2)
    assert handover_gap_ms(stream([0.1] * 5)) is None


def test_report_rows_join_protocols_per_path_and_judge_the_target() -> None:
    streams = {("pod-ip", "tcp"): stream([0.1] * 10), ("pod-ip", "udp"): stream([0.2] * 10),
               ("service", "tcp"): stream([0.1] * 5 + [None] + [0.1] * 4),
               ("service", "udp"): stream([0.1] * 10)}
    state = {"intact": True, "blob_crc": 7, "blob_crc_at_create": 7, "served": 10}
    run = MethodRun(method_named("abswap"), streams, started_ns=0, upgrade_ns=0, done_ns=5 * MS,
                    state_before=state, state_after={**state, "served": 30}, prober=USAGE)
    rows = records(run)
    assert [(r["path"], r["sent"], r["lost"]) for r in rows] == [("pod-ip", 20, 0),
                                                                 ("service", 20, 1)]
    assert rows[0]["p99_ms"] == 0.2 and rows[0]["state_intact"] is True
    assert (rows[0]["prober_cpu_percent"], rows[0]["prober_cpu_us_per_request"]) == (4.0, 1000.0)
    assert rows[0]["send_lateness_max_ms"] == 0.01 and rows[0]["prober_realtime"] is True
    assert target_met(rows) is True
    assert "abswap" in table(rows).splitlines()[1]
    recreated = MethodRun(method_named("abswap"), streams, 0, 0, 5 * MS, state,
                          {**state, "blob_crc": 9}, USAGE)
    assert target_met(records(recreated)) is False

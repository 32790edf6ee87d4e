// Command prober is podkit's open-loop prober: every stream of a demo run (TCP or UDP, at a
// fixed rate each) in one process and one thread, for the Python driver in tools/upgrade_demo/probe.py.
//
//	prober [flags] NAME=tcp|udp:HOST:PORT ...
//
// It reads commands on stdin ("target NAME HOST:PORT" re-aims a stream, "stop" or end of
// input ends the run), and once the requests still out are answered or timed out it prints one
// JSON object on stdout: each stream's records, the process's own CPU time and its peak of
// requests in flight.
//
// Every request leaves when it is due whether or not earlier ones were answered (open loop), and
// its latency counts from when it was due; how late it actually left is recorded beside it. The
// loop waits in epoll_wait for sockets and for a timerfd armed at the next deadline: the timerfd
// wakes it with the kernel's high-resolution timers, where epoll's own timeout and Go's timers
// round to a millisecond (-wake selects those instead, for the benchmark that measured this).
// Sockets, epoll and timers are raw system calls on a locked OS thread (rawsys.go says why): Go's
// net package would park every read and write on its netpoller, whose timers are the
// millisecond ones.
//
// Whatever the target does, the prober keeps running: a request that cannot be sent (the
// stream's share of the in-flight bound, a full descriptor table, any socket error) is recorded as lost with the
// reason, never raised.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

//go:linkname nanotime runtime.nanotime
func nanotime() int64 // CLOCK_MONOTONIC (vDSO), the clock of Python's time.monotonic_ns

const (
	lost          = -1
	reasonTimeout = "timeout"         // no reply within the timeout
	reasonBound   = "in-flight-bound" // not sent: the bound on requests in flight was reached
	reasonClosed  = "closed"          // the connection closed without a reply
	fdReserve     = 64                // descriptors kept free of requests for the prober itself
)

// errnoNames names the errors a target can cause; others print as "errno N".
var errnoNames = map[syscall.Errno]string{
	syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ECONNRESET: "ECONNRESET",
	syscall.ECONNABORTED: "ECONNABORTED", syscall.ETIMEDOUT: "ETIMEDOUT",
	syscall.EHOSTUNREACH: "EHOSTUNREACH", syscall.ENETUNREACH: "ENETUNREACH",
	syscall.EHOSTDOWN: "EHOSTDOWN", syscall.ENETDOWN: "ENETDOWN", syscall.EPIPE: "EPIPE",
	syscall.EMFILE: "EMFILE", syscall.ENFILE: "ENFILE", syscall.ENOBUFS: "ENOBUFS",
	syscall.ENOMEM: "ENOMEM", syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.EAGAIN: "EAGAIN",
	syscall.EPERM: "EPERM", syscall.EACCES: "EACCES", syscall.EMSGSIZE: "EMSGSIZE",
}

func reason(err error) string {
	if e, ok := err.(syscall.Errno); ok {
		if name, ok := errnoNames[e]; ok {
			return name
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return err.Error()
}

// records is one stream's output, field for field the Python StreamRecords.
type records struct {
	Protocol   string         `json:"protocol"`
	RateHz     float64        `json:"rate_hz"`
	DueNs      []int64        `json:"due_ns"`
	LatencyNs  []int64        `json:"latency_ns"`
	LatenessNs []int64        `json:"lateness_ns"` // when it left, after it was due
	Version    []int          `json:"version"`
	Versions   []string       `json:"versions"`
	Errors     map[string]int `json:"errors"`
	Failures   [][2]any       `json:"failures"`
}

type request struct {
	stream   *stream
	index    int
	deadline int64
	fd       int // TCP: the connection; UDP: -1
	written  bool
	reply    []byte
}

type stream struct {
	name    string
	udp     bool
	target  syscall.RawSockaddrInet4
	next    int64
	fd      int // UDP: the stream's socket
	open    int // TCP: connections in flight, each a descriptor
	pending map[int]*request
	queue   []*request // in deadline order, answered ones included until they reach the front
	rec     records
}

type prober struct {
	streams     []*stream
	byName      map[string]*stream
	byFD        map[int]*request
	udpByFD     map[int]*stream
	interval    int64
	timeout     int64
	maxInFlight int // descriptors for connections in flight, shared out among the TCP streams
	tcpShare    int // each TCP stream's part of maxInFlight
	inFlight    int // requests in flight, every stream
	open        int // connections in flight, every TCP stream
	peak        int // the most connections in flight at once
	epfd        int
	timerfd     int
	armed       int64
	wake        string
	stopping    bool
	commands    []byte
	buf         []byte
	payload     []byte
}

func parseTarget(text string) (syscall.RawSockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(strings.TrimSpace(text))
	if err != nil || !ap.Addr().Is4() {
		return syscall.RawSockaddrInet4{}, fmt.Errorf("%q is not IPv4-HOST:PORT", text)
	}
	return sockaddr(ap.Addr().As4(), int(ap.Port())), nil
}

func (p *prober) addStream(spec string, rate float64) error {
	name, rest, ok := strings.Cut(spec, "=")
	proto, target, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || name == "" || (proto != "tcp" && proto != "udp") {
		return fmt.Errorf("stream %q: use NAME=tcp|udp:HOST:PORT", spec)
	}
	if _, dup := p.byName[name]; dup {
		return fmt.Errorf("stream %q given twice", name)
	}
	addr, err := parseTarget(target)
	if err != nil {
		return err
	}
	s := &stream{name: name, udp: proto == "udp", target: addr, fd: -1,
		pending: map[int]*request{},
		rec: records{Protocol: proto, RateHz: rate, DueNs: []int64{}, LatencyNs: []int64{},
			LatenessNs: []int64{}, Version: []int{}, Versions: []string{},
			Errors: map[string]int{}, Failures: [][2]any{}}}
	if s.udp {
		fd, err := rawSocket(syscall.SOCK_DGRAM)
		if err != nil {
			return fmt.Errorf("stream %s: udp socket: %w", name, err)
		}
		s.fd = fd
		p.udpByFD[fd] = s
		if err := p.watch(syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLIN); err != nil {
			return err
		}
	}
	p.streams = append(p.streams, s)
	p.byName[name] = s
	return nil
}

func (p *prober) watch(op, fd int, events uint32) error {
	return rawEpollCtl(p.epfd, op, fd, events)
}

// --- the loop ----------------------------------------------------------------------------

func (p *prober) run() {
	// The streams' schedules are spread over the interval: sent one after another, requests
	// due at the same instant would wait for each other.
	start := nanotime()
	for i, s := range p.streams {
		s.next = start + p.interval*int64(i)/int64(len(p.streams))
	}
	events := make([]syscall.EpollEvent, 256)
	for !p.stopping || p.inFlight > 0 {
		now := nanotime()
		if !p.stopping {
			for _, s := range p.streams {
				for s.next <= now {
					p.send(s, s.next)
					s.next += p.interval
					now = nanotime()
				}
			}
		}
		p.expire(now)
		n := p.wait(events, p.wakeAt(now), now)
		for _, ev := range events[:n] {
			p.event(int(ev.Fd), ev.Events)
		}
	}
}

func (p *prober) wakeAt(now int64) int64 {
	wake := now + p.timeout
	if !p.stopping {
		for _, s := range p.streams {
			wake = min(wake, s.next)
		}
	}
	for _, s := range p.streams {
		for len(s.queue) > 0 && s.pending[s.queue[0].index] != s.queue[0] {
			s.queue = s.queue[1:] // answered or failed already
		}
		if len(s.queue) > 0 {
			wake = min(wake, s.queue[0].deadline)
		}
	}
	return wake
}

// wait returns the number of events once they come or “wake“ has passed.
func (p *prober) wait(events []syscall.EpollEvent, wake, now int64) int {
	timeout := 0 // milliseconds, for epoll_wait
	switch p.wake {
	case "timerfd":
		if wake > now {
			if wake != p.armed {
				if err := rawArmTimer(p.timerfd, wake); err != nil {
					fatal("timerfd_settime: %v", err)
				}
				p.armed = wake
			}
			timeout = -1
		}
	case "epoll-ms": // what poll, epoll and Python's selectors offer: whole milliseconds
		timeout = int((wake - now + 999_999) / 1e6)
	case "spin": // epoll's milliseconds, then a busy-wait for the rest
		timeout = int((wake - now) / 1e6)
	case "gotimer": // Go's runtime timers
		if wake > now {
			time.Sleep(time.Duration(wake - now))
		}
	}
	n, err := rawEpollWait(p.epfd, events, timeout)
	if err != nil {
		if err == syscall.EINTR {
			return 0
		}
		fatal("epoll_wait: %v", err)
	}
	return n
}

func (p *prober) event(fd int, events uint32) {
	switch {
	case fd == p.timerfd:
		var expirations [8]byte
		rawRead(fd, expirations[:])
		p.armed = 0
	case fd == 0:
		p.readCommands()
	case p.udpByFD[fd] != nil:
		p.udpReplies(p.udpByFD[fd])
	case p.byFD[fd] != nil:
		p.tcpEvent(p.byFD[fd], events)
	}
}

func (p *prober) readCommands() {
	n, err := rawRead(0, p.buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		p.stopReading()
		return
	}
	p.commands = append(p.commands, p.buf[:n]...)
	for {
		line, rest, ok := strings.Cut(string(p.commands), "\n")
		if !ok {
			return
		}
		p.commands = []byte(rest)
		words := strings.Fields(line)
		switch {
		case len(words) == 3 && words[0] == "target":
			s, known := p.byName[words[1]]
			addr, err := parseTarget(words[2])
			if !known || err != nil {
				p.ignored(line)
				continue
			}
			s.target = addr
		case len(words) == 1 && words[0] == "stop":
			p.stopReading()
			return
		default:
			p.ignored(line)
		}
	}
}

// ignored says so on stderr, with a raw write: the loop makes no call the runtime sees.
func (p *prober) ignored(line string) {
	rawWrite(2, []byte(fmt.Sprintf("prober: ignored %q\n", line)))
}

func (p *prober) stopReading() {
	p.stopping = true
	p.watch(syscall.EPOLL_CTL_DEL, 0, 0)
}

// --- requests ----------------------------------------------------------------------------

func (p *prober) send(s *stream, due int64) {
	r := &s.rec
	index := len(r.DueNs)
	r.DueNs = append(r.DueNs, due)
	r.LatencyNs = append(r.LatencyNs, lost)
	r.Version = append(r.Version, -1)
	r.LatenessNs = append(r.LatenessNs, nanotime()-due)
	// Each TCP stream has its own share of the descriptors, so a target that holds one
	// stream's connections (an outage) never costs another stream a request. A UDP request
	// takes no descriptor: the stream's socket carries them all.
	if !s.udp && s.open >= p.tcpShare {
		p.fail(s, index, reasonBound)
		return
	}
	req := &request{stream: s, index: index, deadline: due + p.timeout, fd: -1}
	if s.udp {
		if err := rawSendto(s.fd, p.request(index), &s.target); err != nil {
			p.fail(s, index, reason(err))
			return
		}
	} else {
		fd, err := rawSocket(syscall.SOCK_STREAM)
		if err != nil { // EMFILE, ENFILE, ENOBUFS: this request fails, the prober goes on
			p.fail(s, index, reason(err))
			return
		}
		// Closed with a reset: 1,000 connections a second must not fill the port range
		// with TIME_WAIT sockets.
		rawResetOnClose(fd)
		err = rawConnect(fd, &s.target)
		if err == nil || err == syscall.EINPROGRESS {
			err = p.watch(syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLOUT)
		}
		if err != nil {
			rawClose(fd)
			p.fail(s, index, reason(err))
			return
		}
		req.fd = fd
		p.byFD[fd] = req
		s.open++
		p.open++
		p.peak = max(p.peak, p.open)
	}
	s.pending[index] = req
	s.queue = append(s.queue, req)
	p.inFlight++
}

// request is the demo protocol's GET of request “index“ (in a buffer reused by the next).
func (p *prober) request(index int) []byte {
	p.payload = strconv.AppendInt(append(p.payload[:0], "GET "...), int64(index), 10)
	return append(p.payload, '\n')
}

func (p *prober) tcpEvent(req *request, events uint32) {
	s := req.stream
	if !req.written {
		err := rawSoError(req.fd)
		if err == nil {
			err = rawWrite(req.fd, p.request(req.index)) // a few bytes: sent whole
		}
		if err == nil {
			err = p.watch(syscall.EPOLL_CTL_MOD, req.fd, syscall.EPOLLIN)
		}
		if err != nil {
			p.drop(req)
			p.fail(s, req.index, reason(err))
			return
		}
		req.written = true
		return
	}
	n, err := rawRead(req.fd, p.buf)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return
	case err != nil:
		p.drop(req)
		p.fail(s, req.index, reason(err))
		return
	case n == 0:
		p.drop(req)
		p.fail(s, req.index, reasonClosed)
		return
	}
	req.reply = append(req.reply, p.buf[:n]...)
	if req.reply[len(req.reply)-1] == '\n' {
		p.drop(req)
		p.answered(s, req.index, req.reply)
	}
}

func (p *prober) udpReplies(s *stream) {
	for {
		n, err := rawRead(s.fd, p.buf)
		if err == syscall.EAGAIN {
			return
		}
		if err != nil { // an ICMP error about an earlier datagram
			if err != syscall.EINTR {
				s.rec.Errors[reason(err)]++
			}
			continue
		}
		fields := strings.SplitN(string(p.buf[:n]), " ", 4)
		if len(fields) < 3 {
			continue
		}
		index, err := strconv.Atoi(fields[2])
		if req, ok := s.pending[index]; err == nil && ok {
			p.drop(req)
			p.answered(s, index, p.buf[:n])
		}
	}
}

func (p *prober) answered(s *stream, index int, reply []byte) {
	r := &s.rec
	r.LatencyNs[index] = nanotime() - r.DueNs[index]
	version, _, _ := strings.Cut(string(reply), " ")
	version = strings.TrimRight(version, "\n")
	for i, v := range r.Versions {
		if v == version {
			r.Version[index] = i
			return
		}
	}
	r.Versions = append(r.Versions, version)
	r.Version[index] = len(r.Versions) - 1
}

func (p *prober) expire(now int64) {
	for _, s := range p.streams {
		for len(s.queue) > 0 && s.queue[0].deadline <= now {
			req := s.queue[0]
			s.queue = s.queue[1:]
			if s.pending[req.index] == req {
				p.drop(req)
				p.fail(s, req.index, reasonTimeout)
			}
		}
	}
}

// drop forgets a request in flight and closes its connection.
func (p *prober) drop(req *request) {
	s := req.stream
	if s.pending[req.index] != req {
		return
	}
	delete(s.pending, req.index)
	p.inFlight--
	if req.fd >= 0 {
		s.open--
		p.open--
		delete(p.byFD, req.fd)
		rawClose(req.fd) // also leaves the epoll set
		req.fd = -1
	}
}

func (p *prober) fail(s *stream, index int, why string) {
	s.rec.Failures = append(s.rec.Failures, [2]any{index, why})
	s.rec.Errors[why]++
}

// --- the process -------------------------------------------------------------------------

// takeRealtime gives every thread of the process SCHED_FIFO priority 10; threads the runtime
// starts later inherit it. All of them, because the runtime may run the loop on any of its
// threads, and one left at normal priority would hold the loop up behind the machine's load.
func takeRealtime() bool {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return false
	}
	param := struct{ priority int32 }{10}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			return false
		}
		_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid),
			1 /* SCHED_FIFO */, uintptr(unsafe.Pointer(&param)))
		if e != 0 {
			return false
		}
	}
	return true
}

func fdLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(lim.Cur, 1<<20))
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "prober: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	rate := flag.Float64("rate", 1000, "requests per second, per stream")
	timeout := flag.Float64("timeout", 1, "seconds after which an unanswered request is lost")
	maxInFlight := flag.Int("max-in-flight", 0, "bound on TCP connections in flight, shared "+
		"out evenly among the TCP streams (0: the open-file limit less a reserve)")
	realtime := flag.Bool("realtime", true, "take SCHED_FIFO priority 10 if allowed")
	wake := flag.String("wake", "timerfd", "how to wait for deadlines: timerfd, epoll-ms, "+
		"spin, gotimer (the last three for the benchmark)")
	flag.Parse()
	if *rate <= 0 || *timeout <= 0 || *maxInFlight < 0 || flag.NArg() == 0 {
		fatal("usage: prober [-rate HZ] [-timeout S] [-max-in-flight N] NAME=tcp|udp:HOST:PORT ...")
	}
	switch *wake {
	case "timerfd", "epoll-ms", "spin", "gotimer":
	default:
		fatal("-wake %q: use timerfd, epoll-ms, spin or gotimer", *wake)
	}
	// Records grow by appending and are kept to the end: there is nothing to collect, and a
	// collection would pause the loop. The limit is a safety net for a very long run.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(2 << 30)
	runtime.GOMAXPROCS(1)

	p := &prober{byName: map[string]*stream{}, byFD: map[int]*request{},
		udpByFD: map[int]*stream{}, interval: int64(1e9 / *rate), timeout: int64(*timeout * 1e9),
		maxInFlight: *maxInFlight, wake: *wake, buf: make([]byte, 4096),
		payload: make([]byte, 0, 32)}
	if p.maxInFlight == 0 {
		p.maxInFlight = max(1, fdLimit()-fdReserve)
	}
	var err error
	if p.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		fatal("epoll_create1: %v", err)
	}
	fd, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, 1, /* CLOCK_MONOTONIC */
		syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		fatal("timerfd_create: %v", e)
	}
	p.timerfd = int(fd)
	if err := p.watch(syscall.EPOLL_CTL_ADD, p.timerfd, syscall.EPOLLIN); err != nil {
		fatal("epoll_ctl: %v", err)
	}
	tcpStreams := 0
	for _, spec := range flag.Args() {
		if err := p.addStream(spec, *rate); err != nil {
			fatal("%v", err)
		}
		if !p.streams[len(p.streams)-1].udp {
			tcpStreams++
		}
	}
	p.tcpShare = max(1, p.maxInFlight/max(1, tcpStreams))
	if err := syscall.SetNonblock(0, true); err != nil {
		fatal("stdin: %v", err)
	}
	if err := p.watch(syscall.EPOLL_CTL_ADD, 0, syscall.EPOLLIN); err != nil {
		fatal("stdin: %v", err)
	}
	isRealtime := *realtime && takeRealtime()
	start := nanotime()
	p.run()
	wall := nanotime() - start

	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	out := struct {
		Streams      map[string]*records `json:"streams"`
		CPUUserNs    int64               `json:"cpu_user_ns"`
		CPUSysNs     int64               `json:"cpu_sys_ns"`
		WallNs       int64               `json:"wall_ns"`
		Realtime     bool                `json:"realtime"`
		Wake         string              `json:"wake"`
		MaxInFlight  int                 `json:"max_in_flight"`
		PeakInFlight int                 `json:"peak_in_flight"`
	}{map[string]*records{}, ru.Utime.Nano(), ru.Stime.Nano(), wall, isRealtime, p.wake,
		p.maxInFlight, p.peak}
	for _, s := range p.streams {
		out.Streams[s.name] = &s.rec
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fatal("writing the records: %v", err)
	}
}

"""Reads of the API over HTTPS with a kubeconfig's certificates, for callers that read often.

A kubectl process costs about a tenth of a second of CPU to start; a watcher that reads a
namespace several times a second (``make chaos``'s observer) would spend a core on kubectl
alone, and several at once would starve the clusters they watch. This reader speaks plain
HTTPS (the standard library: no client library between it and the apiserver) with the files a
testbed kubeconfig names (``testbed.pki.kubeconfig``: server, CA file, client certificate and
key files, or a bearer token as ``testbed.operator_proc.account_kubeconfig`` writes).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.errors import TestbedError


class ApiReadError(TestbedError):
    """A read that got no JSON answer: refused, timed out, cut off, or an HTTP error."""


@dataclass(frozen=True)
class ApiReader:
    server: str  # https://host:port
    context: ssl.SSLContext
    headers: dict[str, str]

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiReader:
        config = yaml.safe_load(path.read_text())
        name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        headers = {"Accept": "application/json"}
        if "client-certificate" in user:
            tls.load_cert_chain(user["client-certificate"], user["client-key"])
        if "token" in user:
            headers["Authorization"] = f"Bearer {user['token']}"
        return cls(cluster["server"].rstrip("/"), tls, headers)

    def get(self, path: str, timeout: float = 10, **params: str) -> dict[str, Any]:
        """GET ``path`` (``/api/v1/...``) with query ``params``; the answer's JSON."""
        url = self.server + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as answer:
                found: dict[str, Any] = json.loads(answer.read())
        except urllib.error.HTTPError as err:
            raise ApiReadError(f"GET {path}: HTTP {err.code} {err.read()[:200]!r}") from err
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise ApiReadError(f"GET {path}: {err}") from err
        return found


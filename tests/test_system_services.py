"""make setup's system half: nginx is a tool, found in sbin, and a service its package starts is stopped."""

from __future__ import annotations

import subprocess

from cachelab.kit import system


def test_nginx_is_a_tool_whose_service_setup_stops():
    nginx = next(t for t in system.TOOLS if t.command == "nginx")
    assert nginx.apt == "nginx" and nginx.service == "nginx" and not nginx.server
    from cachelab.kit import prefetch

    assert "nginx" in prefetch.deb_packages(), "the stick carries it too"


def test_a_daemon_in_sbin_is_found(monkeypatch, tmp_path):
    exe = tmp_path / "somed"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(system, "SBIN", (str(tmp_path),))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert system.found("somed") and not system.found("otherd")


def test_stop_services_stops_what_the_install_started(monkeypatch):
    ran, said = [], []
    monkeypatch.setattr(system.sys, "platform", "linux")
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system.shutil, "which", lambda name: f"/usr/bin/{name}")

    def run(command, timeout):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    tools = [t for t in system.TOOLS if t.command in ("nginx", "wrk")]
    stopped = system.stop_services(tools, run=run, say=said.append)
    assert stopped == ["nginx"] and len(ran) == 1
    assert ran[0] in (["systemctl", "disable", "--now", "nginx"], ["service", "nginx", "stop"])
    assert any("stopping the nginx service" in line for line in said)
    assert system.stop_services([t for t in system.TOOLS if t.command == "wrk"], run=run, say=said.append) == []


def test_stop_services_only_says_so_without_root_or_sudo(monkeypatch):
    monkeypatch.setattr(system.sys, "platform", "linux")
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(system, "_no_password_sudo", lambda: False)
    said = []
    nginx = [t for t in system.TOOLS if t.command == "nginx"]
    assert system.stop_services(nginx, run=lambda *a, **k: 1 / 0, say=said.append) == []
    assert "systemctl disable --now" in said[0]

"""Sandbox lifecycle against a real sietchd, on the counter test guest
(no agent, native speed)."""

from __future__ import annotations

import pytest

import sietch
from sietch import Client, Sandbox


def test_create_list_connect_and_delete_on_exit(client: Client, testguest: str):
    with Sandbox.create(image=testguest, labels={"owner": "test"}, memory_mib=64, client=client) as sb:
        assert sb.last_info.state == "running"
        assert sb.last_info.labels == {"owner": "test"}
        assert sb.id in [s.id for s in Sandbox.list(client=client)]
        again = Sandbox.connect(sb.id, client=client)
        assert again.info().image == testguest
    with pytest.raises(sietch.NotFoundError) as e:
        Sandbox.connect(sb.id, client=client)
    assert e.value.status == 404 and e.value.code == "not_found"


def test_pause_resume_and_wrong_state(counter: Sandbox):
    assert counter.pause().state == "paused"
    with pytest.raises(sietch.WrongStateError):
        counter.pause()
    assert counter.resume().state == "running"
    assert counter.pause(to_disk=True).state == "suspended"
    assert counter.info().state == "suspended"
    assert counter.resume().state == "running"


def test_snapshot_restore_and_in_use(client: Client, counter: Sandbox):
    snap = counter.snapshot()
    assert snap.sandbox_id == counter.id and snap.kind == "full" and snap.size_bytes > 0
    assert snap.id in [s.id for s in counter.snapshots()]
    assert snap.id in [s.id for s in client.snapshots()]
    with Sandbox.restore(snap, client=client) as restored:
        assert restored.id != counter.id
        assert restored.last_info.state == "running" and restored.last_info.snapshot == snap.id
        with pytest.raises(sietch.InUseError, match=restored.id):
            client.delete_snapshot(snap)
    client.delete_snapshot(snap)
    with pytest.raises(sietch.NotFoundError):
        client.get_snapshot(snap.id)


def test_fork(client: Client, counter: Sandbox):
    forks = counter.fork(3)
    try:
        assert len({f.id for f in forks} | {counter.id}) == 4
        assert all(f.info().state == "running" for f in forks)
    finally:
        for f in forks:
            f.delete()
    with pytest.raises(sietch.BadRequestError):
        counter.fork(0)


def test_console(counter: Sandbox):
    # The guest may not have written yet: follow waits for its first line.
    with counter.follow_console() as f:
        assert f.readline().startswith(b"counter: start")
    assert "counter: start" in counter.console()


def test_exec_without_agent_says_retry(counter: Sandbox):
    with pytest.raises(sietch.AgentUnavailableError) as e:
        counter.exec("true")
    assert e.value.retry and e.value.status == 503


def test_errors_carry_codes(client: Client, testguest: str):
    with pytest.raises(sietch.NotFoundError, match="nope"):
        Sandbox.create(image="nope", client=client)
    with pytest.raises(sietch.UnauthorizedError):
        Sandbox.list(client=Client(client.addr, token="wrong"))
    with pytest.raises(sietch.NotFoundError):
        sietch.Template.get("no-such-template", client=client)


def test_service_calls(client: Client, testguest: str):
    h = client.health()
    assert h.status == "ok" and h.version
    assert testguest in [i.name for i in client.images()]
    assert "sietch_sandboxes" in client.metrics()
    assert "operationId: createSandbox" in client.openapi()


def test_build_image_refused_with_its_line(client: Client, tmp_path):
    # A Dockerfile the builder cannot run is refused before any sandbox
    # boots, with its line; the context travels as a tar of the directory.
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN --mount=type=cache,target=/c true\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    logs: list[str] = []
    with pytest.raises(sietch.BadRequestError, match="Dockerfile:2") as e:
        client.build_image("refused", tmp_path, on_log=logs.append)
    assert "--mount" in str(e.value)
    assert "refused" not in [i.name for i in client.images()]

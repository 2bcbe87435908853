"""Templates: booted, snapshotted images that sandboxes resume warm."""

from __future__ import annotations

import builtins
import urllib.parse

from . import _codec
from .client import DEFAULT, Client, _decode_list, resolve
from .errors import SietchError
from .models import Limits, TemplateInfo, TemplateRequest


class TemplateBuildError(SietchError):
    """A template build ended failed; ``template`` says where and why."""

    code = "template_failed"

    def __init__(self, template: TemplateInfo) -> None:
        super().__init__(f"template {template.name}: the build failed at {template.step or 'a step'}: {template.reason or 'no reason given'}")
        self.template = template


def _path(name: str) -> str:
    return "/v1/templates/" + urllib.parse.quote(name, safe="")


class Template:
    """Build, list, get and delete templates (``Sandbox.create(template=...)``
    starts sandboxes from them)."""

    @staticmethod
    def build(
        name: str,
        image: str | None = None,
        *,
        start_cmd: str | None = None,
        ready_port: int | None = None,
        ready_cmd: str | None = None,
        ready_timeout_s: int | None = None,
        contexts: builtins.list[str] | None = None,
        cpus: int | None = None,
        memory_mib: int | None = None,
        disk_mib: int | None = None,
        wait: bool = True,
        client: Client | None = None,
        request_timeout: float | None = DEFAULT,
    ) -> TemplateInfo:
        """Build a template: boot ``image``, run ``start_cmd`` and leave it
        running, wait until ``ready_port`` accepts and ``ready_cmd`` exits
        0, warm the code ``contexts``, snapshot. With ``wait`` (default)
        it returns once the build has ended and raises TemplateBuildError
        if it failed; else at once, the template building."""
        limits = Limits(cpus=cpus, memory_mib=memory_mib, disk_mib=disk_mib)
        req = TemplateRequest(
            name=name,
            image=image,
            start_cmd=start_cmd,
            ready_port=ready_port,
            ready_cmd=ready_cmd,
            ready_timeout_s=ready_timeout_s,
            contexts=contexts,
            limits=limits if limits != Limits() else None,
        )
        c = resolve(client)
        info = _codec.decode(TemplateInfo, c.call("POST", "/v1/templates", json_body=req, expect=202))
        if not wait:
            return info
        return Template.get(name, wait=True, client=c, request_timeout=request_timeout)

    @staticmethod
    def get(
        name: str, wait: bool = False, client: Client | None = None, request_timeout: float | None = DEFAULT
    ) -> TemplateInfo:
        """One template; with ``wait``, once it is no longer building
        (TemplateBuildError if its build failed)."""
        c = resolve(client)
        if not wait:
            return _codec.decode(TemplateInfo, c.call("GET", _path(name)))
        doc = c.call("GET", _path(name), query={"wait": "true"}, long=True, timeout=request_timeout)
        info = _codec.decode(TemplateInfo, doc)
        if info.state == "failed":
            raise TemplateBuildError(info)
        return info

    @staticmethod
    def list(client: Client | None = None) -> builtins.list[TemplateInfo]:
        return _decode_list(TemplateInfo, resolve(client).call("GET", "/v1/templates"), "templates")

    @staticmethod
    def delete(name: str, client: Client | None = None) -> None:
        """Remove a template and its snapshot (a build in progress is
        cancelled); InUseError names the sandboxes that still need it."""
        resolve(client).call("DELETE", _path(name), expect=204)

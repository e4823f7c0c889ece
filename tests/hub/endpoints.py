"""The Hub API endpoints the huggingface_hub / datasets clients use, one `_h_<name>` method each.

Answers mirror the JSON shapes (and the headers, e.g. X-Repo-Commit, X-Linked-Etag) that those
clients read, and nothing more; the request plumbing and auth are in `tests.hub.handler`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .handler import HubRequestHandler
from .state import HubCommit, HubError, Repo, is_lfs_path
from .wire import URL_PREFIX, Request, Response, json_response, parse_form_or_json, parse_range


class HubHandler(HubRequestHandler):
    """One request to the test Hub; `HubServer` serves with this class."""

    def _h_unknown(self, req: Request) -> Response:
        raise HubError(404, f"hubserver does not implement {req.method} {self.path}")

    def _h_whoami(self, req: Request) -> Response:
        if not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")
        hub = self.server.hub
        return json_response({"type": "user", "id": "0" * 24, "name": hub.user, "fullname": hub.user, "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _h_agent_harnesses(self, req: Request) -> Response:
        return json_response({"standardEnvVars": [], "harnesses": {}})

    def _h_validate_yaml(self, req: Request) -> Response:
        return json_response({"errors": [], "warnings": []})

    def _h_create_repo(self, req: Request) -> Response:
        self._require_write()
        payload = json.loads(req.body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self.server.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        self.server.hub.state.create_repo(repo_type, repo_id, private, url)
        return json_response({"url": url, "name": repo_id})

    def _h_delete_repo(self, req: Request) -> Response:
        self._require_write()
        payload = json.loads(req.body or b"{}")
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload['name']}"
        self.server.hub.state.delete_repo(payload.get("type") or "model", repo_id)
        return json_response({})

    def _h_repo_info(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        siblings = [{"rfilename": p, "size": e.size, "blobId": e.git_oid,
                     **({"lfs": {"size": e.size, "sha256": e.sha256, "pointerSize": len(e.pointer)}} if e.lfs else {})}
                    for p, e in sorted(commit.files.items())]
        return json_response({"_id": repo.commits[0].oid[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                      "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.commits[0].date,
                      "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                      "tags": [], "siblings": siblings, "usedStorage": sum(e.size for e in commit.files.values())})

    def _tree_entry(self, repo: Repo, commit: HubCommit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.files.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
        else:
            under = sorted((p, e.git_oid) for p, e in commit.files.items() if p.startswith(path + "/"))
            out = {"type": "directory", "oid": hashlib.sha1(json.dumps([path, under]).encode()).hexdigest(), "size": 0,
                   "path": path}
        if expand:
            last = self.server.hub.state.last_commit_touching(repo, commit, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    def _h_tree(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        path = req.path.strip("/")
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {req.rev}", "EntryNotFound",
                           {"X-Repo-Commit": commit.oid})
        recursive = req.flag("recursive")
        dirs: set[str] = set()
        files: list[str] = []
        for p in sorted(commit.files):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            if len(parts) == 1 or recursive:
                files.append(p)
            dirs.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts) if recursive else min(2, len(parts))))
        entries = [self._tree_entry(repo, commit, p, req.flag("expand")) for p in [*sorted(dirs), *files]]
        return json_response(entries)

    def _h_paths_info(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        form = parse_form_or_json(req.body, req.content_type)
        paths = form.get("paths", [])
        expand_raw = form.get("expand", False)
        expand = expand_raw if isinstance(expand_raw, bool) else str(expand_raw[-1]).lower() == "true"
        out = []
        for raw in [paths] if isinstance(paths, str) else paths:
            path = raw.strip("/")
            if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
                out.append(self._tree_entry(repo, commit, path, expand))
        return json_response(out)

    def _h_commits(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        history = repo.commits[: repo.commits.index(commit) + 1]
        return json_response([{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                       "authors": [{"user": self.server.hub.user}]} for c in reversed(history)])

    def _h_refs(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        main = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head.oid}
        return json_response({"branches": [main], "converts": [], "tags": [], "pullRequests": []})

    def _h_preupload(self, req: Request) -> Response:
        repo = self._writable_repo(req)
        head = self.server.hub.state.revision(repo, req.rev)
        out = []
        for f in json.loads(req.body)["files"]:
            lfs = is_lfs_path(f["path"], base64.b64decode(f.get("sample", "")), int(f["size"]))
            existing = head.files.get(f["path"])
            oid = None if existing is None else existing.sha256 if existing.lfs else existing.git_oid
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        return json_response({"files": out, "commitOid": head.oid})

    def _h_lfs_batch(self, req: Request) -> Response:
        repo = self._writable_repo(req)
        payload = json.loads(req.body)
        if payload.get("operation") != "upload":
            raise HubError(400, "hubserver only implements LFS batch uploads")
        state, endpoint = self.server.hub.state, self.server.hub.endpoint
        objects = []
        for obj in payload["objects"]:
            oid, size = str(obj["oid"]), int(obj["size"])
            if state.has_object(oid):
                stored = len(state.get_object(oid))
                objects.append({"oid": oid, "size": size} if stored == size else
                               {"oid": oid, "size": size, "error": {"code": 422, "message": "size mismatch"}})
                continue
            state.announce(oid, size)
            verify = f"{endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
            objects.append({"oid": oid, "size": size, "authenticated": True,
                            "actions": {"upload": {"href": f"{endpoint}/lfs-upload/{oid}"}, "verify": {"href": verify}}})
        resp = json_response({"transfer": "basic", "objects": objects})
        resp.content_type = "application/vnd.git-lfs+json"
        return resp

    def _h_lfs_upload(self, req: Request) -> Response:
        state, oid = self.server.hub.state, req.path
        size = state.announced_size(oid)
        if size is None:
            raise HubError(403, f"upload of {oid} was not announced through the LFS batch API")
        if len(req.body) != size or hashlib.sha256(req.body).hexdigest() != oid:
            raise HubError(400, f"uploaded bytes do not match oid {oid} / size {size}")
        state.put_object(req.body)
        return Response(200, b"", {"ETag": f'"{oid}"'})

    def _h_lfs_verify(self, req: Request) -> Response:
        self._writable_repo(req)
        payload, state = json.loads(req.body), self.server.hub.state
        if not state.has_object(payload["oid"]) or len(state.get_object(payload["oid"])) != int(payload["size"]):
            raise HubError(404, f"LFS object {payload['oid']} not found")
        return json_response({"success": True})

    def _h_commit(self, req: Request) -> Response:
        repo = self._writable_repo(req)
        if req.flag("create_pr"):
            raise HubError(400, "hubserver does not implement pull requests")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        header: dict[str, Any] = next((item["value"] for item in lines if item["key"] == "header"), {})
        ops = [(item["key"], item["value"]) for item in lines if item["key"] != "header"]
        commit = self.server.hub.state.commit(repo, req.rev, header, ops)
        url = f"{self.server.hub.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return json_response({"success": True, "commitOid": commit.oid, "commitUrl": url, "commitMessage": commit.title,
                      "hookOutput": "", "pullRequestUrl": None})

    def _h_resolve(self, req: Request) -> Response:
        repo = self._readable_repo(req)
        state = self.server.hub.state
        commit = state.revision(repo, req.rev)
        entry = commit.files.get(req.path)
        if entry is None:
            raise HubError(404, f"Entry not found: {req.path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = state.get_object(entry.sha256)
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes",
                   "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"'}
        if entry.lfs:
            headers |= {"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)}
        rng = self.headers.get("Range")
        if rng is None:
            return Response(200, data, headers, "application/octet-stream", head_length=len(data))
        start, end = parse_range(rng, len(data))
        if start >= len(data) or start > end:
            raise HubError(416, f"Range {rng} not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(206, data[start:end + 1], headers, "application/octet-stream", head_length=end + 1 - start)

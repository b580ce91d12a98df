"""Render ssmd's kustomize overlays in pure Python: ``python deploy/render.py deploy/k8s/overlays/prod``.

The tests need the objects an overlay produces without a kustomize binary, so this module
implements the part of kustomize the manifests under ``deploy/k8s`` use, and refuses everything
else by name instead of rendering it differently:

- ``resources``: YAML files (several documents each) and directories holding a kustomization,
  built first, recursively; no remote bases.
- ``configMapGenerator`` with ``files`` (``key=path`` or ``path``) and ``literals``, and
  ``options.disableNameSuffixHash: true`` (no hash suffixes: the names must stay stable so the
  Dagster Helm release can mount the same ConfigMaps).
- ``patches`` (``path`` or inline ``patch``): strategic-merge patches (targeted by the patch's own
  kind and name) and JSON 6902 patches (with an explicit ``target``). Strategic merge knows the
  merge keys of the pod-spec lists (containers, env, volumes, volumeMounts, ports, ...); other
  lists are replaced, as the Kubernetes schema says; ``$patch: delete|replace`` and ``null``
  (delete a field) are honoured. A merged list comes out as kustomize orders it: the patch's
  items first, then the original items the patch does not mention.
- ``namespace``, ``labels`` (``pairs``, ``includeTemplates``; not ``includeSelectors: true``),
  ``commonAnnotations`` (objects and pod templates), ``images`` (``newName``, ``newTag``, ``digest``).

Transformers run in kustomize's order for these fields: generators, patches, namespace, labels,
annotations, images. Files outside the kustomization directory may be read (kustomize needs
``--load-restrictor LoadRestrictionsNone`` for that); ``tests/deploy`` compares this renderer with
``kubectl kustomize`` whenever a kubectl is installed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "commonAnnotations",
        "configMapGenerator",
        "patches",
        "images",
    }
)
# Kinds without a namespace among those these manifests could plausibly contain.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
# Strategic-merge keys of the lists under a pod template (from the Kubernetes API's
# x-kubernetes-patch-merge-key); lists not named here are replaced by a patch.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ports": ("containerPort", "port"),  # container ports, then Service ports
}
# kustomize's "legacy" output order: what must exist first comes first.
KIND_ORDER = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_DELETE = object()


class RenderError(Exception):
    """The kustomization cannot be rendered (bad input, or a kustomize feature not supported here)."""


def resource_id(obj: Obj) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): what kustomize calls a resource id."""
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name", "")),
    )


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a file; each must be a Kubernetes object."""
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: {exc}") from exc
    objects = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"{path}: every document must be an object with apiVersion and kind")
        objects.append(doc)
    return objects


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise RenderError(f"{directory}: no kustomization.yaml")


def render(directory: str | Path) -> list[Obj]:
    """The objects ``kustomize build`` would produce for ``directory``, in kustomize's order."""
    return sort_objects(_build(Path(directory).resolve(), ()))


def _build(directory: Path, stack: tuple[Path, ...]) -> list[Obj]:
    if directory in stack:
        raise RenderError(f"{directory}: kustomization cycle")
    path = _kustomization_file(directory)
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict):
        raise RenderError(f"{path}: not a mapping")
    unknown = sorted(set(spec) - SUPPORTED_FIELDS)
    if unknown:
        raise RenderError(f"{path}: not supported by deploy/render.py: {', '.join(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{path}: kind must be Kustomization")

    objects: list[Obj] = []
    for entry in spec.get("resources") or []:
        target = (directory / str(entry)).resolve()
        if "://" in str(entry) or str(entry).startswith("github.com/"):
            raise RenderError(f"{path}: remote resource {entry!r} not supported")
        found = _build(target, (*stack, directory)) if target.is_dir() else load_documents(target)
        _add_all(objects, found, path)
    _add_all(objects, [_config_map(directory, g, path) for g in spec.get("configMapGenerator") or []], path)

    for patch in spec.get("patches") or []:
        _apply_patch(objects, directory, patch, path)
    if spec.get("namespace"):
        _set_namespace(objects, str(spec["namespace"]))
    for entry in spec.get("labels") or []:
        _add_labels(objects, entry, path)
    if spec.get("commonAnnotations"):
        annotations = {str(k): str(v) for k, v in spec["commonAnnotations"].items()}
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
            if obj.get("kind") in WORKLOAD_KINDS:  # kustomize annotates pod templates too
                template = obj.setdefault("spec", {}).setdefault("template", {})
                template.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
    for image in spec.get("images") or []:
        _set_image(objects, image, path)
    return objects


def _add_all(objects: list[Obj], new: Iterable[Obj], source: Path) -> None:
    seen = {resource_id(o) for o in objects}
    for obj in new:
        rid = resource_id(obj)
        if rid in seen:
            raise RenderError(f"{source}: {rid[1]} {rid[3]!r} is defined twice")
        seen.add(rid)
        objects.append(obj)


def _config_map(directory: Path, generator: Obj, source: Path) -> Obj:
    allowed = {"name", "files", "literals", "options"}
    extra = sorted(set(generator) - allowed)
    if extra:
        raise RenderError(f"{source}: configMapGenerator {generator.get('name')!r}: not supported: {', '.join(extra)}")
    options = generator.get("options") or {}
    if options.get("disableNameSuffixHash") is not True:
        raise RenderError(
            f"{source}: configMapGenerator {generator.get('name')!r}: set options.disableNameSuffixHash: true "
            "(name hash suffixes are not rendered here)"
        )
    data: dict[str, str] = {}
    for item in generator.get("files") or []:
        key, _, rel = str(item).rpartition("=")
        file = (directory / rel).resolve()
        key = key or file.name
        try:
            data[key] = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderError(f"{source}: configMapGenerator file {rel!r}: {exc}") from exc
    for item in generator.get("literals") or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise RenderError(f"{source}: literal {item!r} is not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            raise RenderError(f"{source}: quoted literal {item!r} not supported")
        data[key] = value
    metadata: Obj = {"name": str(generator["name"])}
    if options.get("labels"):
        metadata["labels"] = {str(k): str(v) for k, v in options["labels"].items()}
    if options.get("annotations"):
        metadata["annotations"] = {str(k): str(v) for k, v in options["annotations"].items()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(sorted(data.items()))}


# ---- patches ----------------------------------------------------------------------------------


def _apply_patch(objects: list[Obj], directory: Path, entry: Obj, source: Path) -> None:
    extra = sorted(set(entry) - {"path", "patch", "target"})
    if extra:
        raise RenderError(f"{source}: patch option not supported: {', '.join(extra)}")
    if "path" in entry:
        text = (directory / str(entry["path"])).read_text()
        where = f"{source.parent / str(entry['path'])}"
    else:
        text = str(entry.get("patch", ""))
        where = f"{source}: inline patch"
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = entry.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if not target:
            raise RenderError(f"{where}: a JSON 6902 patch needs a target")
        for obj in _match_target(objects, target, where):
            _json6902(obj, docs[0], where)
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise RenderError(f"{where}: a strategic-merge patch must be an object")
        matches = _match_target(objects, target, where) if target else _match_patch(objects, doc, where)
        for obj in matches:
            merged = _merge(obj, doc, ())
            obj.clear()
            obj.update(merged)


def _match_target(objects: Sequence[Obj], target: Obj, where: str) -> list[Obj]:
    extra = sorted(set(target) - {"group", "version", "kind", "name", "namespace"})
    if extra:
        raise RenderError(f"{where}: target selector not supported: {', '.join(extra)}")
    found = []
    for obj in objects:
        api_version = str(obj.get("apiVersion", ""))
        meta = obj.get("metadata") or {}
        if "kind" in target and obj.get("kind") != target["kind"]:
            continue
        if "name" in target and meta.get("name") != target["name"]:
            continue
        if "namespace" in target and (meta.get("namespace") or "") != target["namespace"]:
            continue
        if "group" in target and _group(api_version) != target["group"]:
            continue
        if "version" in target and api_version.split("/")[-1] != target["version"]:
            continue
        found.append(obj)
    if not found:
        raise RenderError(f"{where}: no resource matches target {target}")
    return found


def _match_patch(objects: Sequence[Obj], patch: Obj, where: str) -> list[Obj]:
    name = (patch.get("metadata") or {}).get("name")
    found = [
        o
        for o in objects
        if o.get("kind") == patch.get("kind")
        and _group(str(o.get("apiVersion", ""))) == _group(str(patch.get("apiVersion", "")))
        and (o.get("metadata") or {}).get("name") == name
    ]
    if not found:
        raise RenderError(f"{where}: no {patch.get('kind')} named {name!r} to patch")
    return found


def _merge(original: Any, patch: Any, path: tuple[str, ...]) -> Any:
    """Strategic merge of ``patch`` into ``original``; returns a new value or ``_DELETE``."""
    if isinstance(patch, dict):
        directive = patch.get("$patch")
        if directive == "delete":
            return _DELETE
        if directive == "replace":
            return _strip({k: v for k, v in patch.items() if k != "$patch"}, path)
        if directive is not None:
            raise RenderError(f"{'.'.join(path)}: $patch: {directive} not supported")
        if not isinstance(original, dict):
            return _strip(patch, path)
        result = dict(original)
        for key, value in patch.items():
            if key.startswith("$"):
                raise RenderError(f"{'.'.join((*path, key))}: directive not supported")
            if value is None:
                result.pop(key, None)
                continue
            merged = _merge(result[key], value, (*path, key)) if key in result else _strip(value, (*path, key))
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        return result
    if isinstance(patch, list):
        field = path[-1] if path else ""
        key = _merge_key(field, original, patch)
        if key is None or not isinstance(original, list):
            return _strip(patch, path)
        # kustomize's order: the patch's items first, in patch order (merged into the original
        # item with the same key, if any), then the original items the patch does not mention.
        by_key = {o.get(key): o for o in original if isinstance(o, dict)}
        items: list[Any] = []
        mentioned = set()
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"{'.'.join(path)}: every item needs the merge key {key!r}")
            mentioned.add(item[key])
            where = (*path, str(item[key]))
            merged_item = _merge(by_key[item[key]], item, where) if item[key] in by_key else None
            if item[key] not in by_key:
                merged_item = _DELETE if item.get("$patch") == "delete" else _strip(item, where)
            if merged_item is not _DELETE:
                items.append(merged_item)
        items += [copy.deepcopy(o) for o in original if not (isinstance(o, dict) and o.get(key) in mentioned)]
        return items
    return copy.deepcopy(patch)


def _merge_key(field: str, original: Any, patch: list[Any]) -> str | None:
    candidates = MERGE_KEYS.get(field)
    if not candidates:
        return None
    items = [i for i in [*(original if isinstance(original, list) else []), *patch] if isinstance(i, dict)]
    for key in candidates:
        if items and all(key in i for i in items):
            return key
    return candidates[0]


def _strip(value: Any, path: tuple[str, ...]) -> Any:
    """A patch value added where nothing was merged: no directives may remain in it."""
    if isinstance(value, dict):
        if "$patch" in value:
            raise RenderError(f"{'.'.join(path)}: $patch with nothing to apply it to")
        return {k: _strip(v, (*path, k)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v, path) for v in value]
    return value


def _json6902(obj: Obj, operations: list[Any], where: str) -> None:
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise RenderError(f"{where}: only add, replace and remove operations are supported")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in str(op["path"]).split("/")[1:]]
        if not tokens:
            raise RenderError(f"{where}: empty path")
        parent: Any = obj
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif op["op"] == "replace":
                parent[index] = copy.deepcopy(op["value"])
            else:
                del parent[index]
        elif op["op"] == "remove":
            del parent[last]
        else:
            if op["op"] == "replace" and last not in parent:
                raise RenderError(f"{where}: replace of missing {op['path']}")
            parent[last] = copy.deepcopy(op["value"])


# ---- transformers -----------------------------------------------------------------------------


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") == "Namespace":
            meta["name"] = namespace  # kustomize renames a Namespace object to the target namespace
        elif obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            meta["namespace"] = namespace


def _add_labels(objects: list[Obj], entry: Obj, source: Path) -> None:
    extra = sorted(set(entry) - {"pairs", "includeSelectors", "includeTemplates"})
    if extra or entry.get("includeSelectors"):
        raise RenderError(f"{source}: labels: only pairs and includeTemplates are supported")
    pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if entry.get("includeTemplates") and obj.get("kind") in WORKLOAD_KINDS:
            template = obj.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _pod_specs(obj: Obj) -> list[Obj]:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in WORKLOAD_KINDS:
        return [(spec.get("template") or {}).get("spec") or {}]
    if kind == "CronJob":
        return [((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}]
    return []


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/repo:tag@sha256:...`` -> (``registry:5000/repo``, ``tag``, ``sha256:...``)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _set_image(objects: list[Obj], entry: Obj, source: Path) -> None:
    extra = sorted(set(entry) - {"name", "newName", "newTag", "digest"})
    if extra:
        raise RenderError(f"{source}: images: not supported: {', '.join(extra)}")
    for obj in objects:
        for pod in _pod_specs(obj):
            for field in ("initContainers", "containers"):
                for container in pod.get(field) or []:
                    name, tag, digest = split_image(str(container.get("image", "")))
                    if name != entry["name"]:
                        continue
                    name = str(entry.get("newName") or name)
                    if entry.get("newTag") is not None:
                        tag = str(entry["newTag"])
                    if entry.get("digest"):
                        tag, digest = None, str(entry["digest"])
                    container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def sort_objects(objects: list[Obj]) -> list[Obj]:
    def key(obj: Obj) -> tuple[int, str, str, str]:
        kind = str(obj.get("kind", ""))
        rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        _, _, namespace, name = resource_id(obj)
        return rank, kind, namespace, name

    return sorted(objects, key=key)


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump(objects: Iterable[Obj]) -> str:
    return yaml.dump_all(list(objects), Dumper=_Dumper, sort_keys=True, default_flow_style=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy/render.py",
        description="Render a deploy/k8s kustomization (the subset ssmd uses) to YAML on stdout.",
        epilog="example: python deploy/render.py deploy/k8s/overlays/prod | kubectl apply --server-side -f -",
    )
    parser.add_argument("directory", help="a directory with a kustomization.yaml")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(dump(render(args.directory)))
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""deploy/render.py: the kustomize subset it implements, what it refuses, and agreement with kustomize."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import render
from tests.deploy.conftest import OVERLAYS, tool


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def by_id(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {render.resource_id(o): o for o in objects}


DEPLOYMENT = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: app
    spec:
      selector:
        matchLabels: {app: x}
      template:
        metadata:
          labels: {app: x}
        spec:
          containers:
            - name: main
              image: registry.local:5000/team/app:1.0
              command: [run, --fast]
              env:
                - {name: A, value: "1"}
                - {name: B, value: "2"}
              volumeMounts:
                - {name: data, mountPath: /data}
                - {name: tmp, mountPath: /tmp}
            - name: side
              image: side:2
          volumes:
            - {name: data, emptyDir: {}}
            - {name: tmp, emptyDir: {}}
    """


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(
        tmp_path,
        {
            "base/kustomization.yaml": """\
                resources: [deployment.yaml]
                labels:
                  - pairs: {team: md}
                    includeTemplates: true
                configMapGenerator:
                  - name: settings
                    literals: [MODE=fast, "URL=nats://n:4222?a=b"]
                    files: [conf.txt, renamed.txt=conf.txt]
                    options: {disableNameSuffixHash: true}
                """,
            "base/deployment.yaml": DEPLOYMENT,
            "base/conf.txt": "line 1\nline 2\n",
            "overlay/kustomization.yaml": """\
                namespace: md
                resources: [../base, ns.yaml]
                commonAnnotations: {owner: data}
                images:
                  - {name: registry.local:5000/team/app, newTag: "2.0"}
                  - {name: side, newName: ghcr.io/x/side, digest: "sha256:abc"}
                patches:
                  - path: patch.yaml
                  - target: {kind: Deployment, name: app}
                    patch: |-
                      - op: add
                        path: /spec/template/spec/containers/0/args
                        value: [--verbose]
                """,
            "overlay/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: placeholder}\n",
            "overlay/patch.yaml": """\
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: app}
                spec:
                  template:
                    spec:
                      containers:
                        - name: main
                          command: [run]
                          env:
                            - {name: B, $patch: delete}
                            - {name: C, value: "3"}
                          volumeMounts:
                            - {mountPath: /tmp, $patch: delete}
                      volumes:
                        - {name: tmp, $patch: delete}
                """,
        },
    )
    return tmp_path


def test_renders_the_supported_subset(tree: Path) -> None:
    objects = render.render(tree / "overlay")
    assert [o["kind"] for o in objects] == ["Namespace", "ConfigMap", "Deployment"]
    namespace, config_map, deployment = objects
    assert namespace["metadata"]["name"] == "md"  # kustomize renames the Namespace object
    assert config_map["metadata"] == {
        "name": "settings",
        "namespace": "md",
        "labels": {"team": "md"},
        "annotations": {"owner": "data"},
    }
    assert config_map["data"] == {
        "MODE": "fast",
        "URL": "nats://n:4222?a=b",
        "conf.txt": "line 1\nline 2\n",
        "renamed.txt": "line 1\nline 2\n",
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {"app": "x", "team": "md"}
    assert template["metadata"]["annotations"] == {"owner": "data"}
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "x"}  # selectors untouched
    main, side = template["spec"]["containers"]
    assert main["image"] == "registry.local:5000/team/app:2.0"
    assert side["image"] == "ghcr.io/x/side@sha256:abc"
    assert main["command"] == ["run"]  # lists without a merge key are replaced
    assert main["args"] == ["--verbose"]  # JSON 6902
    # kustomize's order for a merged list: the patch's items first, then the untouched originals.
    assert main["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]
    assert main["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]  # merge key: mountPath
    assert template["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("namePrefix: x-\nresources: []\n", "not supported by deploy/render.py: namePrefix"),
        (
            "configMapGenerator:\n  - name: c\n    literals: [A=1]\n",
            "set options.disableNameSuffixHash: true",
        ),
        ("resources: [https://example.invalid/base]\n", "remote resource"),
        ("labels:\n  - pairs: {a: b}\n    includeSelectors: true\n", "only pairs and includeTemplates"),
        ("resources: [d.yaml, d.yaml]\n", "is defined twice"),
        (
            "resources: [d.yaml]\npatches:\n  - patch: '{apiVersion: v1, kind: Service, metadata: {name: nope}}'\n",
            "no Service",
        ),
    ],
)
def test_refuses_what_it_does_not_implement(tmp_path: Path, kustomization: str, message: str) -> None:
    write(tmp_path, {"kustomization.yaml": kustomization, "d.yaml": DEPLOYMENT})
    with pytest.raises(render.RenderError, match=message):
        render.render(tmp_path)


def test_split_image() -> None:
    assert render.split_image("registry:5000/a/b:1.2@sha256:ff") == ("registry:5000/a/b", "1.2", "sha256:ff")
    assert render.split_image("registry:5000/a/b") == ("registry:5000/a/b", None, None)
    assert render.split_image("ssmd-connector") == ("ssmd-connector", None, None)


def test_cli_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main([str(OVERLAYS["prod"])]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert docs[0]["kind"] == "Namespace"
    assert by_id(docs) == by_id(render.render(OVERLAYS["prod"]))


def kustomize(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_agrees_with_kustomize_on_the_overlays(overlay: str) -> None:
    assert by_id(render.render(OVERLAYS[overlay])) == by_id(kustomize(OVERLAYS[overlay]))


def test_agrees_with_kustomize_on_the_feature_tree(tree: Path) -> None:
    assert by_id(render.render(tree / "overlay")) == by_id(kustomize(tree / "overlay"))

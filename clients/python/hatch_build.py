"""Generates the Python stubs from ../../proto at build time (a hatchling build hook).

`pip install`, `pip wheel` and editable installs all run it; the tests' conftest.py runs
`generate_stubs` too, so the stubs always match the contracts. Nothing generated is committed.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
STUBS_DIR = PACKAGE_ROOT / "src" / "retryd" / "v1"


def proto_root() -> Path:
    """The contracts: the repository's proto/ in a checkout, or the copy an sdist carries."""
    for candidate in (PACKAGE_ROOT.parent.parent / "proto", PACKAGE_ROOT / "proto"):
        if (candidate / "retryd" / "v1").is_dir():
            return candidate
    raise FileNotFoundError("no proto/retryd/v1 beside or above the package")


def generate_stubs() -> list[Path]:
    """Runs grpcio-tools' protoc over every contract; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root()
    contracts = sorted(str(path.relative_to(root)) for path in (root / "retryd" / "v1").glob("*.proto"))
    for stale in STUBS_DIR.glob("*_pb2*.py*"):
        stale.unlink()
    STUBS_DIR.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out = str(PACKAGE_ROOT / "src")
    args = [
        "protoc",
        f"--proto_path={root}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *contracts,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {contracts}")
    (STUBS_DIR / "__init__.py").write_text(
        '"""Package retryd.v1: messages (*_pb2) and gRPC stubs (*_pb2_grpc), generated from proto/."""\n'
    )
    return sorted(STUBS_DIR.iterdir())


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # Only the build needs hatchling; conftest.py imports generate_stubs alone.
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name == "wheel":
            generate_stubs()

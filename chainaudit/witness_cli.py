"""``chainaudit witness keygen|verifier|serve``: run a ``c2sp.org/tlog-witness`` witness.

Registered on the main parser by :mod:`chainaudit.cli`; the handlers import the witness
modules only when they run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from chainaudit.app.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the ``witness`` command and its actions to ``commands`` (a sub-parsers action)."""
    witness = commands.add_parser(
        "witness",
        help="a transparency log witness (c2sp.org/tlog-witness): keys and the HTTP service",
        description="Cosign the checkpoints of the logs you follow, after checking they are "
        "consistent with what you cosigned before. See docs/witness.md.",
    )
    actions = witness.add_subparsers(dest="witness_action", required=True, metavar="ACTION")
    keygen = actions.add_parser(
        "keygen", help="generate a cosignature/v1 key; writes it (mode 0600), prints the vkey"
    )
    keygen.add_argument("--name", required=True, help="the witness's key name, e.g. a URL")
    keygen.add_argument("--out", required=True, type=Path, help="the new private key file")
    keygen.set_defaults(handler=cmd_witness_keygen)
    verifier = actions.add_parser("verifier", help="print the vkey of a witness key file")
    verifier.add_argument("--key", required=True, type=Path, help="the private key file")
    verifier.set_defaults(handler=cmd_witness_verifier)
    serve = actions.add_parser("serve", help="serve POST /add-checkpoint until interrupted")
    serve.add_argument("--config", required=True, type=Path, help="key and followed logs")
    serve.add_argument("--state", required=True, type=Path, help="the state file (SQLite)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(handler=cmd_witness_serve)


def _show(args: argparse.Namespace, text: str, result: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(text)


def cmd_witness_keygen(args: argparse.Namespace, _settings: Settings) -> int:
    from chainaudit.service.witness import write_key_file  # noqa: PLC0415

    signer = write_key_file(args.name, args.out)
    vkey = signer.verifier().encode()
    _show(args, vkey, {"vkey": vkey, "key_file": str(args.out)})
    return 0


def cmd_witness_verifier(args: argparse.Namespace, _settings: Settings) -> int:
    from chainaudit.service.witness import read_key_file  # noqa: PLC0415

    vkey = read_key_file(args.key).verifier().encode()
    _show(args, vkey, {"vkey": vkey})
    return 0


def cmd_witness_serve(args: argparse.Namespace, _settings: Settings) -> int:
    from chainaudit.service.witness import Witness, load_config, serve  # noqa: PLC0415
    from chainaudit.service.witness_state import WitnessState  # noqa: PLC0415

    config = load_config(args.config)
    witness = Witness(config, WitnessState(args.state))
    vkey = config.verifier.encode()

    def announce(url: str) -> None:
        logs = ", ".join(sorted(config.logs))
        print(f"witness {vkey} at {url}/add-checkpoint, following {logs}", flush=True)

    serve(witness, host=args.host, port=args.port, on_started=announce)
    return 0

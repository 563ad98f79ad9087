"""The ``zoo`` command group and its commands (imported by :func:`zoo.cli.main` once Ctrl-C is
handled). Command modules import only light modules at import time, so ``zoo pull`` never loads
torch."""

from __future__ import annotations

import click

from .. import __version__
from .common import ZooGroup


@click.group("zoo", cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zoo")
def cli():
    """Build, verify and pull the dense EfficientNet model zoo as reproducible ONNX artifacts.

    \b
    Examples:
      zoo list                      # the B0-B7 scaling table
      zoo build --all               # export, verify and write artifacts/manifest.json
      zoo info artifacts/dense_b0/model.onnx
    """


def register_commands() -> None:
    """Each command lives in its own module."""
    from .bench import bench_cmd, report_cmd
    from .build import build_cmd, info_cmd
    from .data import data_cmd
    from .export import export_group
    from .hub import COMMANDS as hub_commands
    from .models import list_cmd, show_cmd
    from .release import COMMANDS as release_commands
    from .train import train_cmd
    from .study import study_group
    from .verify import verify_cmd

    for command in (list_cmd, show_cmd, build_cmd, verify_cmd, bench_cmd, report_cmd, info_cmd, *hub_commands,
                    *release_commands, train_cmd, data_cmd):
        cli.add_command(command)
    cli.add_command(study_group)
    cli.add_command(export_group)


register_commands()


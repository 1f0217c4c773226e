"""``python -m orchestrator [overrides]`` — the Hydra entry point; nothing else."""
import sys

import hydra

from orchestrator.cli import check_argv, hoist_multirun
from orchestrator.config.root import register_configs
from orchestrator.hydra_entry import run_single

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> None:
    run_single(cfg)


if __name__ == "__main__":
    sys.argv[1:] = hoist_multirun(sys.argv[1:])
    check_argv()
    main()

"""``python -m orchestrator [overrides]`` — the Hydra entry point; nothing else."""
import sys

import hydra

from orchestrator.app.argv import check_argv, hoist_multirun, plan_flag
from orchestrator.app.hydra_entry import register_configs, run_single

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> None:
    run_single(cfg)


if __name__ == "__main__":
    sys.argv[1:] = plan_flag(hoist_multirun(sys.argv[1:]))
    check_argv()
    main()

"""``python -m orchestrator [overrides]`` — Hydra entry point (DESIGN §1)."""
import hydra

from orchestrator.cli import check_argv
from orchestrator.config import register_configs
from orchestrator.sweep import run_single

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> None:
    run_single(cfg)


if __name__ == "__main__":
    check_argv()
    main()

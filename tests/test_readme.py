"""The README's configuration table names every setting: jobs, service, load tools."""

from __future__ import annotations

from loadtest.settings import BenchSettings, StackSettings
from offline_jobs.settings import JobSettings
from prerank_contract.settings import ENV_PREFIX
from research.memory import MemorySettings
from research.scale import ScaleSettings
from research.soak import SoakSettings
from research.train_memory import TrainMemorySettings
from service.settings import ServiceSettings
from tests.conftest import REPO_ROOT


def test_every_setting_is_in_the_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1]
    names = set().union(
        *(
            c.model_fields
            for c in (
                JobSettings,
                ServiceSettings,
                SoakSettings,
                StackSettings,
                BenchSettings,
                MemorySettings,
                ScaleSettings,
                TrainMemorySettings,
            )
        )
    )
    missing = [n for n in sorted(names) if f"| `{ENV_PREFIX}{n.upper()}` |" not in table]
    assert missing == []

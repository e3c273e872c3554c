# Every pytest suite under tests/ uses the harness's fixtures (private smbd in a network
# namespace, a test user, logs attached to failures).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest_plugins = ["harness.fixtures", "harness.bed"]

"""Run the checkout service: ``python -m checkout``."""

from checkout.bootstrap import bootstrap
from infra import runner

if __name__ == "__main__":
    runner.main("checkout", bootstrap)

from infra import runner
from pricing.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("pricing", bootstrap)

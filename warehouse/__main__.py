from infra import runner
from warehouse.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("warehouse", bootstrap)

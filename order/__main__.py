from infra import runner
from order.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("order", bootstrap)

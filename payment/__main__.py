from infra import runner
from payment.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("payment", bootstrap)

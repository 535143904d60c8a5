from infra import runner
from promotion.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("promotion", bootstrap)

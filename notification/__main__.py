from infra import runner
from notification.bootstrap import bootstrap

if __name__ == "__main__":
    runner.main("notification", bootstrap)

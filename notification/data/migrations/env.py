from infra.migrate import run_env
from notification.data.tables import metadata

run_env(metadata)

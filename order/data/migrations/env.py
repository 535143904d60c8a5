from infra.migrate import run_env
from order.data.tables import metadata

run_env(metadata)

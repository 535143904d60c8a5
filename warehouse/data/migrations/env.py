from infra.migrate import run_env
from warehouse.data.tables import metadata

run_env(metadata)

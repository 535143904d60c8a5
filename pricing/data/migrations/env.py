from infra.migrate import run_env
from pricing.data.tables import metadata

run_env(metadata)

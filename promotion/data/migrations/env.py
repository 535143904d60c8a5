from infra.migrate import run_env
from promotion.data.tables import metadata

run_env(metadata)

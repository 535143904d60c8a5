from infra.migrate import run_env
from payment.data.tables import metadata

run_env(metadata)

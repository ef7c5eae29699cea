#!/usr/bin/env bash
# Runs an azscep CA admin command against the deployed CA with YOUR Azure credential (az login / azd auth login),
# never the app's managed identity:
#
#   infra/scripts/azscep-admin.sh ca show
#   infra/scripts/azscep-admin.sh ca init [-subject ...] [-key-type RSA-HSM|EC-HSM|RSA|EC] [-subordinate] ...
#   infra/scripts/azscep-admin.sh ca import -cert chain.pem
#   infra/scripts/azscep-admin.sh ca rotate-ra
#
# Settings come from the azd environment (outputs of infra/main.bicep): AZSCEP_BASE_URL, AZSCEP_TABLES_ENDPOINT,
# AZSCEP_KEYVAULT_URL, AZSCEP_CA_KEY_NAME, AZSCEP_KEK_NAME, AZSCEP_RA_MODE, AZSCEP_TABLES_PREFIX. The admin needs
# Key Vault Crypto Officer on the vault and Storage Table Data Contributor on the account (main.bicep grants both
# to AZURE_PRINCIPAL_ID). Set AZSCEP_SKIP_BUILD=1 to reuse .local/bin/azscep.
set -euo pipefail
# shellcheck source=infra/scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ ${1:-} != ca || $# -lt 2 ]]; then
	echo "usage: $0 ca init|import|rotate-ra|show [flags]" >&2
	exit 2
fi

load_azd_env
require_vars AZSCEP_BASE_URL AZSCEP_TABLES_ENDPOINT AZSCEP_KEYVAULT_URL AZURE_TENANT_ID
if [[ -z ${AZSCEP_SKIP_BUILD:-} || ! -x $AZSCEP_CLI ]]; then
	build_cli
fi

# The admin commands never call Intune, but config.Load validates the SCEP endpoint list before any command runs:
# the static endpoint would need the challenge (which this machine should not hold), an intune endpoint only a
# tenant. AZURE_CLIENT_ID is removed so that the CLI uses DefaultAzureCredential (the admin) instead of a managed
# identity, and local-only settings from a `make run` shell cannot leak into azure mode.
exec env -u AZURE_CLIENT_ID -u AZSCEP_TABLES_CONNECTION -u AZSCEP_DEV_ISSUER -u AZSCEP_INTUNE_CA_BUNDLE \
	AZSCEP_MODE=azure \
	AZSCEP_SCEP_ENDPOINTS=intune \
	AZSCEP_INTUNE_TENANT_ID="${AZSCEP_INTUNE_TENANT_ID:-$AZURE_TENANT_ID}" \
	"$AZSCEP_CLI" "$@"

#!/usr/bin/env bash
# Runs an azscep CA admin command against the deployed CA with YOUR Azure credential (azd's sign-in,
# `azd auth login`), never the app's managed identity:
#
#   infra/scripts/azscep-admin.sh ca show
#   infra/scripts/azscep-admin.sh ca init [-subject ...] [-key-type RSA-HSM|EC-HSM|RSA|EC] [-subordinate] ...
#   infra/scripts/azscep-admin.sh ca import -cert chain.pem
#   infra/scripts/azscep-admin.sh ca rotate-ra
#   infra/scripts/azscep-admin.sh revoke -serial SERIAL [-reason keyCompromise] [-comment TEXT]   (break-glass)
#   infra/scripts/azscep-admin.sh backup -out FILE      (the tables, with their types)
#   infra/scripts/azscep-admin.sh restore -in FILE      (into tables of a CA that has not served yet)
#
# Settings come from the azd environment (outputs of infra/main.bicep): AZSCEP_BASE_URL, AZSCEP_TABLES_ENDPOINT,
# AZSCEP_KEYVAULT_URL, AZSCEP_CA_KEY_NAME, AZSCEP_KEK_NAME, AZSCEP_RA_MODE, AZSCEP_TABLES_PREFIX. The admin needs
# Key Vault Crypto Officer on the vault and Storage Table Data Contributor on the account (main.bicep grants both
# to AZURE_PRINCIPAL_ID; revoke, backup and restore need only the second). Set AZSCEP_SKIP_BUILD=1 to reuse .local/bin/azscep.
set -euo pipefail
# shellcheck source=infra/scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! [[ (${1:-} == ca && $# -ge 2) || ${1:-} == revoke || ${1:-} == backup || ${1:-} == restore ]]; then
	echo "usage: $0 ca init|import|rotate-ra|show [flags]" >&2
	echo "       $0 revoke -serial SERIAL [-reason REASON] [-comment TEXT]" >&2
	echo "       $0 backup -out FILE | restore -in FILE" >&2
	exit 2
fi

load_azd_env
require_vars AZSCEP_BASE_URL AZSCEP_TABLES_ENDPOINT AZSCEP_KEYVAULT_URL AZURE_TENANT_ID
if [[ -z ${AZSCEP_SKIP_BUILD:-} || ! -x $AZSCEP_CLI ]]; then
	build_cli
fi

# Which identity: the roles main.bicep grants go to AZURE_PRINCIPAL_ID, the principal azd is signed in as. Without
# AZURE_TOKEN_CREDENTIALS, DefaultAzureCredential (azidentity) tries the Azure CLI before azd, so an `az` signed in as
# someone else would get 403s. With azd available we therefore pin azd's credential (azidentity accepts
# the credential type name — v1.15 here, see go.mod; "dev" would still try the CLI first). Set AZURE_TOKEN_CREDENTIALS yourself to choose
# another (e.g. AzureCLICredential). The CLI prints whom it acts as before doing anything.
if [[ -z ${AZURE_TOKEN_CREDENTIALS:-} ]] && command -v azd >/dev/null 2>&1; then
	export AZURE_TOKEN_CREDENTIALS=AzureDeveloperCLICredential
fi
log "credential: ${AZURE_TOKEN_CREDENTIALS:-DefaultAzureCredential chain (azd not found)}"

# AZURE_CLIENT_ID is removed so that the CLI uses the admin's credential instead of a managed identity, and
# local-only settings from a `make run` shell cannot leak into azure mode. The static challenge is not needed:
# admin commands ignore the optional features (config.Faults) whose settings this machine does not hold.
exec env -u AZURE_CLIENT_ID -u AZSCEP_TABLES_CONNECTION -u AZSCEP_DEV_ISSUER -u AZSCEP_INTUNE_CA_BUNDLE \
	AZSCEP_MODE=azure \
	"$AZSCEP_CLI" "$@"

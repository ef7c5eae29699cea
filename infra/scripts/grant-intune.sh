#!/usr/bin/env bash
# Grants the app's managed identity the application permissions azscep needs, as Microsoft Graph
# appRoleAssignments (managed identities have no "API permissions" blade). Idempotent: existing assignments are
# left alone.
#
#   infra/scripts/grant-intune.sh [MANAGED_IDENTITY_PRINCIPAL_ID] [--set-azd-env]
#
#   Microsoft Intune API  scep_challenge_provider                 validate SCEP challenges, notify Intune, and
#                                                                 download/upload revocation requests
#   Microsoft Graph       Application.Read.All                    Intune service discovery; /api/csr and admin API:
#                                                                 an app-only token's service principal (enabled)
#   Microsoft Graph       User.Read.All                           /api/csr and admin API: a user token's account
#                                                                 (enabled, UPN, sessions revoked) as it is now
#                                                                 hourly timer: users delta, to revoke the /api/csr
#                                                                 certificates of accounts disabled or deleted
#   Microsoft Graph       Directory.Read.All                      /api/csr and admin API: a user's app role assignments now
#                                                                 (directly and through groups)
#   Microsoft Graph       Device.Read.All                         self-service: registered owners of a device
#                                                                 hourly timer: devices delta, to revoke the /api/csr
#                                                                 certificates of devices disabled
#   Microsoft Graph       DeviceManagementManagedDevices.Read.All self-service: the user of a managed device, and
#                                                                 whether Intune is retiring, wiping or deleting it
#
# In a tenant without Intune (no Microsoft Intune API service principal) only the five Graph permissions the REST
# API needs are granted, DeviceManagementManagedDevices.Read.All included (Graph answers its calls there that the
# tenant has no Intune, which self-service reads as no managed device; Intune licensed later finds it granted), and
# the Intune endpoint cannot be enabled.
#
# The principal ID defaults to AZURE_MANAGED_IDENTITY_PRINCIPAL_ID from the azd environment. The signed-in az user
# must be allowed to grant application permissions (Privileged Role Administrator or Global Administrator).
# Then enable the Intune endpoint: azd env set AZSCEP_INTUNE_TENANT_ID <tenant> && azd provision
# (--set-azd-env does the first half).
# Run it before AZSCEP_INTUNE_TENANT_ID is set (and before /api/csr is
# enabled): the platform caches a managed identity's token per resource for up to 24 hours and nothing forces a new
# one (restarting the app empties only the app's own cache), so a token fetched before the grant lacks these
# permissions until it expires.
set -euo pipefail
# shellcheck source=infra/scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Well-known application IDs and the documented Intune role (docs: intune-protocol §3.3).
intune_app_id=c161e42e-d4df-4a3d-9b42-e7a3c31f59d4
intune_role_id=39d724e8-6a34-4930-9a36-364082c35716
graph_app_id=00000003-0000-0000-c000-000000000000

principal=""
set_env=false
while [[ $# -gt 0 ]]; do
	case "$1" in
	--set-azd-env)
		set_env=true
		shift
		;;
	-h | --help)
		sed -n '2,/^[^#]/{/^#/p}' "$0" # the header, however long it grows
		exit 0
		;;
	-*) die "unknown option $1 (see --help)" ;;
	*)
		principal=$1
		shift
		;;
	esac
done

need az "the Azure CLI, signed in to the Intune tenant"
load_azd_env
# Values set before this run: the app may already hold Intune or Graph tokens without these permissions.
intune_enabled=${AZSCEP_INTUNE_TENANT_ID:-}
api_enabled=${AZSCEP_API_TENANT_ID:-}
principal=${principal:-${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-}}
[[ -n $principal ]] || die "no managed identity principal ID: pass it or run azd provision first"
[[ $principal =~ ^[0-9a-fA-F-]{36}$ ]] || die "'$principal' is not an object ID"

graph=$(graph_url)
tenant=$(az account show --query tenantId -o tsv)
[[ -n $tenant ]] || die "not signed in: run az login"
# Elsewhere Graph answers that the identity "does not exist", which graph_retry would wait on as replication.
check_tenant "$tenant" "the app's managed identity can be granted permissions only in its own tenant"

# service_principal prints the object ID of the service principal of a well-known application in this tenant, or
# nothing when the tenant has none. A failing az stops the script: it must not pass for "no such application".
# (Run it as a plain assignment: inside if or || bash ignores set -e, and command substitutions clear it.)
service_principal() {
	local id
	id=$(az ad sp list --filter "appId eq '$1'" --query "[0].id" -o tsv) || die "az ad sp list for application $1 failed"
	printf '%s\n' "$id"
}

# app_role prints the ID of the application-type app role with the given value on a service principal.
app_role() {
	local id
	id=$(az rest --method GET --uri "$graph/v1.0/servicePrincipals/$1?\$select=appRoles" \
		--query "appRoles[?value=='$2' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)
	[[ -n $id ]] || die "the service principal $1 has no application role $2"
	printf '%s\n' "$id"
}

# The managed identity was created by the last provision: Graph may not have replicated it yet (graph_retry).
existing=$(graph_retry az rest --method GET --uri "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
	--query "value[].[resourceId, appRoleId]" -o tsv | tr '[:upper:]' '[:lower:]')

# grant assigns app role $2 of resource service principal $1 (named $3) unless already assigned.
grant() {
	local resource role label=$3 line
	resource=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
	role=$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')
	while IFS=$'\t' read -r -a line; do
		if [[ ${#line[@]} -ge 2 && ${line[0]} == "$resource" && ${line[1]} == "$role" ]]; then
			log "already granted: $label"
			return 0
		fi
	done <<<"$existing"
	graph_retry az rest --method POST --uri "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
		--headers "Content-Type=application/json" \
		--body "{\"principalId\": \"$principal\", \"resourceId\": \"$resource\", \"appRoleId\": \"$role\"}" >/dev/null
	log "granted: $label"
}

graph_permissions=(Application.Read.All User.Read.All Directory.Read.All Device.Read.All DeviceManagementManagedDevices.Read.All)
intune_sp=$(service_principal "$intune_app_id")
if [[ -n $intune_sp ]]; then
	role=$(app_role "$intune_sp" scep_challenge_provider)
	if [[ $role != "$intune_role_id" ]]; then
		log "warning: scep_challenge_provider has ID $role here, not the documented $intune_role_id; using $role"
	fi
	grant "$intune_sp" "$role" "Microsoft Intune API / scep_challenge_provider"
else
	log "warning: tenant $tenant has no service principal for the Microsoft Intune API ($intune_app_id): is Intune" \
		"licensed here? Granting only the Graph permissions /api/csr needs; the Intune endpoint cannot be enabled."
	[[ $set_env == false ]] || die "--set-azd-env enables the Intune endpoint, which this tenant cannot have"
fi

graph_sp=$(service_principal "$graph_app_id")
[[ -n $graph_sp ]] || die "no service principal for Microsoft Graph in tenant $tenant"
for permission in "${graph_permissions[@]}"; do
	# A plain assignment, so that a failed lookup stops the script (as an argument of grant its status would be lost,
	# and grant would ask Graph for an assignment without a role ID).
	role=$(app_role "$graph_sp" "$permission")
	grant "$graph_sp" "$role" "Microsoft Graph / $permission"
done

cat <<MSG

The managed identity $principal has the permissions above. Tokens it fetched before now do not carry them: the
platform caches a managed identity's token per resource for up to 24 hours, and restarting the function app does
not renew it (it empties only the app's own cache).
MSG
if [[ -n $intune_sp ]]; then
	cat <<MSG
Enable the Intune SCEP endpoint and the hourly revocation sync:
  azd env set AZSCEP_INTUNE_TENANT_ID $tenant
  azd provision
MSG
fi
already=""
if [[ -n $intune_enabled ]]; then already="AZSCEP_INTUNE_TENANT_ID"; fi
if [[ -n $api_enabled ]]; then already="${already:+$already and }AZSCEP_API_TENANT_ID"; fi
if [[ -n $already ]]; then
	log "warning: the azd environment already has $already set:" \
		"if the app has used Intune or Graph since (the hourly revocation sync, Intune enrolments, /api/csr user" \
		"tokens), it holds tokens without these permissions, cached by the platform for up to 24 hours;" \
		"Intune and Graph calls may fail with 401/403 until they expire (a restart does not help)"
fi
if [[ $set_env == true ]]; then
	need azd "to store the value in the azd environment"
	azd env set AZSCEP_INTUNE_TENANT_ID "$tenant"
	log "stored AZSCEP_INTUNE_TENANT_ID in the azd environment; run azd provision"
fi

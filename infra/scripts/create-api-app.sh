#!/usr/bin/env bash
# Creates, or brings up to date, the Entra app registration that protects /api/csr and the admin API
# (/api/certificates). Safe to run again: it changes only what differs and keeps existing role IDs.
#
#   infra/scripts/create-api-app.sh [--name DISPLAY_NAME] [--set-azd-env] [--console-url URL]
#
# Result:
#   - app roles CSR.Request.Db (Application, User), CSR.SelfService (User), Certificates.Manage (Application, User),
#     Certificates.Read (Application, User: the admin API's reads only, never a change);
#   - App ID URI api://<appId>, v2 access tokens (requestedAccessTokenVersion 2), the optional access-token claims
#     idtyp (lets the CA tell app-only tokens from user tokens), upn (the only user name a self-service
#     certificate is bound to: v2 tokens carry it only on request, and preferred_username is mutable) and acct
#     (0 member, 1 guest: guests are refused unless AZSCEP_API_ALLOW_GUESTS for /api/csr, AZSCEP_ADMIN_ALLOW_GUESTS
#     for the admin API), a delegated scope access_as_user that only an administrator can consent to, and that
#     consent given tenant-wide to the console (this app itself);
#   - a service principal with "assignment required", so only principals granted a role get tokens;
#   - the certificate console's SPA redirect URI, <base URL>/api/console/ (from --console-url, or from the azd
#     environment's AZSCEP_BASE_URL): the console signs in as this app and asks for its access_as_user scope.
# It prints the values for AZSCEP_API_TENANT_ID and AZSCEP_API_AUDIENCES; --set-azd-env also stores them in the
# current azd environment (then run `azd provision`).
#
# On a new registration Entra ID may answer for a while that it does not exist yet (replication): those calls are
# retried (common.sh, graph_retry).
# Needs: az (signed in; Application Administrator or Cloud Application Administrator: an owner of the app can update
# it but not give the tenant-wide consent), jq. Roles are granted to clients afterwards (docs/deployment.md, "Entra setup").
set -euo pipefail
# shellcheck source=infra/scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

name=""
set_env=false
console_url=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--name)
		[[ $# -ge 2 ]] || die "--name needs a value"
		name=$2
		shift 2
		;;
	--set-azd-env)
		set_env=true
		shift
		;;
	--console-url)
		[[ $# -ge 2 ]] || die "--console-url needs a value"
		console_url=$2
		shift 2
		;;
	-h | --help)
		sed -n '2,/^[^#]/{/^#/p}' "$0" # the header, however long it grows
		exit 0
		;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

need az "the Azure CLI, signed in to the tenant of the API"
need jq "to merge app roles and claims"
load_azd_env
[[ -n $name ]] || name="azscep-api-${AZURE_ENV_NAME:-default}"

graph=$(graph_url)
tenant=$(az account show --query tenantId -o tsv)
[[ -n $tenant ]] || die "not signed in: run az login"
check_tenant "$tenant" "an API registered there would be refused (the service checks tokens' accounts in Graph in its own tenant)"

new_uuid() {
	if [[ -r /proc/sys/kernel/random/uuid ]]; then
		cat /proc/sys/kernel/random/uuid
	elif command -v uuidgen >/dev/null 2>&1; then
		uuidgen | tr '[:upper:]' '[:lower:]'
	else
		die "cannot generate a UUID (no /proc/sys/kernel/random/uuid, no uuidgen)"
	fi
}

# Find the registration by exact display name (OData string literal: ' doubled).
quoted=${name//\'/\'\'}
matches=$(az ad app list --filter "displayName eq '$quoted'" --query "[].appId" -o tsv)
count=$(printf '%s' "$matches" | grep -c . || true)
if [[ $count -gt 1 ]]; then
	die "$count app registrations are named '$name'; pass --name with a unique name"
elif [[ $count -eq 1 ]]; then
	app_id=$matches
	log "found app registration '$name' ($app_id)"
else
	app_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId -o tsv)
	log "created app registration '$name' ($app_id)"
fi
object_id=$(graph_retry az ad app show --id "$app_id" --query id -o tsv)
app_url="$graph/v1.0/applications/$object_id"

current=$(graph_retry az rest --method GET --uri "$app_url?\$select=identifierUris,appRoles,api,optionalClaims" -o json)

# Desired state, merged into what exists: other roles, scopes and claims are kept; our roles keep their IDs. Graph
# returns roles (and scopes) with the read-only "origin", which a PATCH must not send: it is dropped here, and in the
# comparison below, or an up-to-date registration would never compare equal.
desired=$(jq -c \
	--arg uri "api://$app_id" \
	--arg id1 "$(new_uuid)" --arg id2 "$(new_uuid)" --arg id3 "$(new_uuid)" --arg id4 "$(new_uuid)" \
	--arg id5 "$(new_uuid)" '
	def want: [
		{value: "CSR.Request.Db", id: $id1, types: ["Application", "User"],
		 name: "Request certificates",
		 desc: "Submit any CSR the azscep API profile allows and receive the certificate."},
		{value: "CSR.SelfService", id: $id2, types: ["User"],
		 name: "Request own certificates",
		 desc: "Get client-authentication certificates for yourself or for devices you own."},
		{value: "Certificates.Manage", id: $id3, types: ["Application", "User"],
		 name: "Manage certificates",
		 desc: "Search, read and revoke certificates issued by azscep, and start the Intune revocation sync."},
		{value: "Certificates.Read", id: $id5, types: ["Application", "User"],
		 name: "Read certificates",
		 desc: "Search and read certificates issued by azscep and the CA overview, without changing anything."}
	];
	. as $cur
	| (want | map(.value)) as $ours
	| ($cur.appRoles // [] | map(del(.origin))) as $roles
	| ($cur.api // {}) as $api
	| ($cur.optionalClaims // {}) as $claims
	| ($api.oauth2PermissionScopes // [] | map(del(.origin))) as $scopes
	| {
		identifierUris: ((($cur.identifierUris // []) + [$uri]) | unique),
		appRoles: (
			[$roles[] | select(.value as $v | $ours | index($v) | not)]
			+ [want[] as $w
				| ([$roles[] | select(.value == $w.value)] | .[0]) as $old
				| {allowedMemberTypes: $w.types, description: $w.desc, displayName: $w.name,
				   id: (if $old == null then $w.id else $old.id end), isEnabled: true, value: $w.value}]
		),
		api: ($api + {
			requestedAccessTokenVersion: 2,
			oauth2PermissionScopes: (
				if any($scopes[]; .value == "access_as_user")
				then $scopes | map(if .value == "access_as_user" then . + {type: "Admin"} else . end)
				else $scopes + [{
					id: $id4, value: "access_as_user", type: "Admin", isEnabled: true,
					adminConsentDisplayName: "Use azscep as the signed-in user",
					adminConsentDescription: "Lets the app call the azscep API as the signed-in user; app roles still decide what is allowed.",
					userConsentDisplayName: "Use azscep as you",
					userConsentDescription: "Lets the app call the azscep API as you; your app roles still decide what is allowed."
				}] end)
		}),
		optionalClaims: ($claims + {
			accessToken: (reduce ("idtyp", "upn", "acct") as $n (($claims.accessToken // []);
				if any(.[]; .name == $n) then .
				else . + [{name: $n, source: null, essential: false, additionalProperties: []}] end))
		})
	}' <<<"$current")

# access_as_user is "Admin": only an administrator can consent to it, so no user can be talked into handing their
# roles (a certificate in their name) to a third-party client; an existing scope of type "User" is changed, keeping
# its ID. The console (this app itself) gets the tenant-wide consent below.

# Compare only the properties we manage (sorted), so that an up-to-date registration is not written at all.
normalize='{identifierUris: (.identifierUris // [] | sort), appRoles: (.appRoles // [] | map(del(.origin)) | sort_by(.value)),
	api: (.api // {} | .oauth2PermissionScopes |= ((. // []) | map(del(.origin)) | sort_by(.value))),
	optionalClaims: (.optionalClaims // {})}'
if [[ "$(jq -S -c "$normalize" <<<"$current")" == "$(jq -S -c "$normalize" <<<"$desired")" ]]; then
	log "app roles, App ID URI, token version and claims are up to date"
else
	body=$(mktemp)
	trap 'rm -f "$body"' EXIT
	printf '%s' "$desired" >"$body"
	graph_retry az rest --method PATCH --uri "$app_url" --headers "Content-Type=application/json" --body "@$body" >/dev/null
	log "updated app roles, App ID URI (api://$app_id), token version 2 and the idtyp, upn and acct claims"
fi

# The certificate console (/api/console/) is a single-page app that signs in as this registration: its URL must be
# a SPA redirect URI (authorization code + PKCE, no secret). Other redirect URIs are kept.
[[ -n $console_url || -z ${AZSCEP_BASE_URL:-} ]] || console_url="${AZSCEP_BASE_URL%/}/api/console/"
if [[ -n $console_url ]]; then
	[[ $console_url == https://*/api/console/ ]] || die "--console-url must be https://<host>/api/console/ (got $console_url)"
	spa=$(graph_retry az rest --method GET --uri "$app_url?\$select=spa" -o json | jq -c '.spa.redirectUris // []')
	if jq -e --arg u "$console_url" 'index($u) != null' <<<"$spa" >/dev/null; then
		log "the console redirect URI $console_url is registered"
	else
		spa_body=$(jq -c --arg u "$console_url" '{spa: {redirectUris: (. + [$u])}}' <<<"$spa")
		graph_retry az rest --method PATCH --uri "$app_url" --headers "Content-Type=application/json" --body "$spa_body" >/dev/null
		log "registered the console redirect URI $console_url (SPA platform)"
	fi
else
	log "no AZSCEP_BASE_URL and no --console-url: the certificate console's redirect URI is not registered"
fi

# Service principal (enterprise application): needed to assign roles; "assignment required" blocks everyone else.
sp_id=$(az ad sp list --filter "appId eq '$app_id'" --query "[0].id" -o tsv)
if [[ -z $sp_id ]]; then
	sp_id=$(graph_retry az ad sp create --id "$app_id" --query id -o tsv)
	log "created service principal $sp_id"
fi
required=$(graph_retry az rest --method GET --uri "$graph/v1.0/servicePrincipals/$sp_id?\$select=appRoleAssignmentRequired" --query appRoleAssignmentRequired -o tsv)
if [[ $required != true ]]; then
	graph_retry az rest --method PATCH --uri "$graph/v1.0/servicePrincipals/$sp_id" --headers "Content-Type=application/json" \
		--body '{"appRoleAssignmentRequired": true}' >/dev/null
	log "service principal now requires an app role assignment"
fi

# Tenant-wide (admin) consent for the console, which is this app asking for its own access_as_user scope, and for the
# sign-in scopes MSAL adds (openid, profile, offline_access, Microsoft Graph's): without it every user's sign-in stops
# at "Need admin approval", the scope being admin-consent only (and the sign-in scopes too where the tenant lets users
# consent to nothing). Other client applications (AZSCEP_API_CLIENT_APPS, AZSCEP_ADMIN_CLIENT_APPS) need the consent
# from an administrator too (docs/deployment.md, section 6).
grants=$(graph_retry az rest --method GET --uri "$graph/v1.0/servicePrincipals/$sp_id/oauth2PermissionGrants" -o json)

# consent RESOURCE_SP "SCOPES" WHAT: the console's tenant-wide grant on RESOURCE_SP holds every one of SCOPES; a
# grant that lacks some gets them added, keeping the others.
consent() {
	local resource=$1 scopes=$2 what=$3 grant body
	grant=$(jq -c --arg r "$resource" '[.value[]? | select(.consentType == "AllPrincipals" and .resourceId == $r)] | .[0] // empty' <<<"$grants")
	if [[ -z $grant ]]; then
		body=$(jq -nc --arg c "$sp_id" --arg r "$resource" --arg s "$scopes" \
			'{clientId: $c, consentType: "AllPrincipals", resourceId: $r, scope: $s}')
		if graph_retry az rest --method POST --uri "$graph/v1.0/oauth2PermissionGrants" --headers "Content-Type=application/json" \
			--body "$body" >/dev/null; then
			log "granted admin consent for the console: $what ($scopes)"
		else
			consent_failed=true
		fi
		return
	fi
	body=$(jq -c --arg s "$scopes" '(.scope // "" | split(" ") | map(select(. != ""))) as $have
		| ($s | split(" ") | map(select(. as $w | $have | index($w) | not))) as $missing
		| if $missing == [] then empty else {scope: ($have + $missing | join(" "))} end' <<<"$grant")
	if [[ -z $body ]]; then
		log "admin consent for the console is granted: $what"
		return
	fi
	if graph_retry az rest --method PATCH --uri "$graph/v1.0/oauth2PermissionGrants/$(jq -r .id <<<"$grant")" \
		--headers "Content-Type=application/json" --body "$body" >/dev/null; then
		log "added to the console's admin consent: $what ($scopes)"
	else
		consent_failed=true
	fi
}
# A refused consent (an owner of the registration, not an Application Administrator) does not stop the rest: the
# registration is usable by applications, and the values below are printed; the script still fails at the end.
consent_failed=false
consent "$sp_id" "access_as_user" "the API's access_as_user"
graph_sp=$(az ad sp list --filter "appId eq '00000003-0000-0000-c000-000000000000'" --query "[0].id" -o tsv) ||
	die "looking up Microsoft Graph's service principal failed"
[[ -n $graph_sp ]] || die "no service principal for Microsoft Graph in this tenant"
consent "$graph_sp" "openid profile offline_access" "sign-in"

audiences="$app_id,api://$app_id"
cat <<MSG

API app registration '$name'
  client (app) ID: $app_id
  App ID URI:      api://$app_id
  tenant:          $tenant
Configure azscep with (after infra/scripts/grant-intune.sh, which gives the app's identity the Graph permissions the
API checks tokens' accounts with):
  azd env set AZSCEP_API_TENANT_ID $tenant
  azd env set AZSCEP_API_AUDIENCES "$audiences"
  azd provision
MSG
if [[ $set_env == true ]]; then
	need azd "to store the values in the azd environment"
	azd env set AZSCEP_API_TENANT_ID "$tenant"
	azd env set AZSCEP_API_AUDIENCES "$audiences"
	log "stored AZSCEP_API_TENANT_ID and AZSCEP_API_AUDIENCES in the azd environment; run azd provision"
fi
if [[ $consent_failed == true ]]; then
	die "the tenant-wide consent for the console was refused (above): until an Application Administrator or Cloud" \
		"Application Administrator runs this script again, users cannot sign in to the console"
fi

#!/usr/bin/env bash
# azd postprovision hook: build the azscep admin CLI for this machine and run `azscep ca init` against the
# freshly provisioned Key Vault and tables with the admin's own credential, so that `azd up` ends with a working CA.
#
# `ca init` is idempotent: it adopts an existing CA key, root, RA and chain and creates only what is missing, so
# running this hook again (every `azd provision` / `azd up`) never replaces the CA key or certificate.
#
# azd environment values it reads (set with `azd env set NAME VALUE` before `azd up`):
#   AZSCEP_CA_KEY_TYPE     RSA-HSM (default), EC-HSM, RSA or EC. Also picks the vault SKU in main.bicep.
#   AZSCEP_CA_SUBJECT      e.g. "CN=Contoso Device CA,O=Contoso,C=US" (default: the CLI's "CN=azscep CA,O=azscep")
#   AZSCEP_CA_VALIDITY     root validity, e.g. 3650d (default of the CLI)
#   AZSCEP_CA_KEY_SIZE     RSA: 3072 (default) or 4096
#   AZSCEP_CA_CURVE        EC: P-256 (default) or P-384
#   AZSCEP_CA_SUBORDINATE  true: make a CSR for a parent CA instead of a self-signed root
#   AZSCEP_SKIP_CA_INIT    true: do nothing (bootstrap by hand with infra/scripts/azscep-admin.sh)
#   AZSCEP_CA_INIT_ATTEMPTS tries while new role assignments propagate (default 36, 20 s apart: the 10 minutes
#                          Azure documents for a role assignment to apply, and two more)
# Exit status 2 (a configuration error) is not retried, except a Key Vault or Table Storage host that "does not
# resolve": a vault or account created (or recovered) seconds ago can be missing from DNS for minutes, and
# resolvers cache that negative answer, so it is retried too for the first dns_attempts tries (9, about 3 minutes); a
# name that still does not resolve then is taken to be wrong. A failed sign-in ("signing in for Key Vault": azd's
# token for Key Vault refused, e.g. an expired sign-in or a Conditional Access policy asking for MFA) is exit 1 but
# no role assignment makes it pass, so it gets signin_attempts (3, 40 s) for a network blip, not the full 12 minutes.
# The subject, validity and key parameters only matter the first time; later runs adopt what exists.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/scripts/common.sh
. "$here/common.sh"

load_azd_env
if is_true "${AZSCEP_SKIP_CA_INIT:-false}"; then
	log "AZSCEP_SKIP_CA_INIT is set: not running azscep ca init"
	exit 0
fi
require_vars AZSCEP_BASE_URL AZSCEP_TABLES_ENDPOINT AZSCEP_KEYVAULT_URL AZURE_TENANT_ID
build_cli

args=(ca init -key-type "${AZSCEP_CA_KEY_TYPE:-RSA-HSM}")
if [[ -n ${AZSCEP_CA_SUBJECT:-} ]]; then args+=(-subject "$AZSCEP_CA_SUBJECT"); fi
if [[ -n ${AZSCEP_CA_VALIDITY:-} ]]; then args+=(-validity "$AZSCEP_CA_VALIDITY"); fi
if [[ -n ${AZSCEP_CA_KEY_SIZE:-} ]]; then args+=(-key-size "$AZSCEP_CA_KEY_SIZE"); fi
if [[ -n ${AZSCEP_CA_CURVE:-} ]]; then args+=(-curve "$AZSCEP_CA_CURVE"); fi
subordinate=false
if is_true "${AZSCEP_CA_SUBORDINATE:-false}"; then
	subordinate=true
	args+=(-subordinate)
fi

attempts=${AZSCEP_CA_INIT_ATTEMPTS:-36}
[[ $attempts =~ ^[1-9][0-9]*$ ]] || die "AZSCEP_CA_INIT_ATTEMPTS must be a positive integer"
delay=20
dns_attempts=$((attempts < 9 ? attempts : 9))
signin_attempts=$((attempts < 3 ? attempts : 3))
out=$(mktemp)
trap 'rm -f "$out"' EXIT

log "running azscep $(printf '%q ' "${args[@]}")(key vault ${AZSCEP_KEYVAULT_URL})"
attempt=1
while :; do
	set +e
	AZSCEP_SKIP_BUILD=1 "$here/azscep-admin.sh" "${args[@]}" >"$out" 2>&1
	rc=$?
	set -e
	cat "$out"
	if [[ $rc -eq 0 ]]; then
		break
	fi
	# Exit status 2 is a configuration error, which retrying cannot help, except a name new to DNS (see the top).
	unresolved=false
	if [[ $rc -eq 2 ]] && grep -qF "does not resolve" "$out"; then
		unresolved=true
	fi
	signin=false
	if [[ $rc -eq 1 ]] && grep -qF "signing in for Key Vault" "$out"; then
		signin=true
	fi
	if [[ ($rc -eq 2 && ($unresolved == false || $attempt -ge $dns_attempts)) ||
		($signin == true && $attempt -ge $signin_attempts) || $attempt -ge $attempts ]]; then
		if [[ $unresolved == true ]]; then
			log "the host name above still does not resolve after $attempt tries over $(((attempt - 1) * delay)) s: check the name"
		fi
		if [[ $signin == true ]]; then
			log "azd could not get a Key Vault token (above): waiting does not fix that. Run \`azd auth login\` as the" \
				"principal the roles went to (AZURE_PRINCIPAL_ID), in this subscription's tenant, then \`azd provision\`"
		fi
		die "azscep ca init failed (exit $rc). Fix the cause above and run: infra/scripts/azscep-admin.sh $(printf '%q ' "${args[@]}")"
	fi
	if [[ $signin == true ]]; then
		log "attempt $attempt of $signin_attempts failed signing in; retrying in ${delay}s"
	elif [[ $unresolved == true ]]; then
		log "attempt $attempt of $dns_attempts failed: a Key Vault or storage account created or recovered minutes ago may not be in DNS yet (resolvers also cache the negative answer). Retrying in ${delay}s"
	else
		log "attempt $attempt of $attempts failed; role assignments made by this deployment can take a few minutes to apply. Retrying in ${delay}s"
	fi
	sleep "$delay"
	attempt=$((attempt + 1))
done

if [[ $subordinate == true ]]; then
	csr="$repo_root/.local/${AZURE_ENV_NAME:-azscep}-ca.csr"
	sed -n '/-----BEGIN CERTIFICATE REQUEST-----/,/-----END CERTIFICATE REQUEST-----/p' "$out" >"$csr"
	if [[ -s $csr ]]; then
		log "subordinate CA: CSR written to $csr"
		log "have the parent CA sign it, then run: infra/scripts/azscep-admin.sh ca import -cert chain.pem"
		log "(chain.pem: the signed CA certificate first, then its issuers). The CA serves nothing until then."
	else
		rm -f "$csr"
		log "subordinate CA: no CSR printed (the CA certificate was already imported)"
	fi
fi

cat >&2 <<MSG

azscep is provisioned. Endpoints (after \`azd deploy\`, which \`azd up\` runs next):
  SCEP (static challenge): ${SCEP_URL_STATIC:-${AZSCEP_BASE_URL}/api/scep/static}
  SCEP (Intune):           ${SCEP_URL_INTUNE:-${AZSCEP_BASE_URL}/api/scep/intune}   (enabled once AZSCEP_INTUNE_TENANT_ID is set)
  REST enrollment:         ${CSR_URL:-${AZSCEP_BASE_URL}/api/csr}   (enabled once AZSCEP_API_TENANT_ID is set)
  CA certificate:          ${CA_CERT_URL:-${AZSCEP_BASE_URL}/api/ca}
  Health:                  ${HEALTH_URL:-${AZSCEP_BASE_URL}/api/health}
Static challenge (never printed here):
  az keyvault secret show --vault-name ${AZURE_KEY_VAULT_NAME:-<vault>} --name ${AZSCEP_STATIC_CHALLENGE_SECRET_NAME:-azscep-scep-static-challenge} --query value -o tsv
Next steps: docs/deployment.md (Intune: infra/scripts/grant-intune.sh; REST API: infra/scripts/create-api-app.sh,
then infra/scripts/grant-intune.sh for the Graph permissions the API checks tokens' accounts with).
MSG
if [[ -n ${AZSCEP_API_TENANT_ID:-} ]]; then
	log "the REST API is enabled: it checks every token's account in Microsoft Graph, so the app's identity needs" \
		"Graph User.Read.All and Application.Read.All (and Directory.Read.All for user tokens). If infra/scripts/grant-intune.sh has not run since this version," \
		"run it now (idempotent): until then /api/csr and the admin API answer 503 and /api/health shows \"graph\": refused"
fi

# shellcheck shell=bash
# Written for bash 3.2+ (macOS /bin/bash): no associative arrays, mapfile or case-changing expansions.
# Helpers shared by the azscep deployment scripts. Sourced, not executed.

# repo_root is the repository root (the scripts live in infra/scripts/).
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# AZSCEP_CLI is the admin CLI built for this machine (the same path `make run` uses).
AZSCEP_CLI="$repo_root/.local/bin/azscep"

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

die() {
	log "error: $*"
	exit 1
}

# need fails unless a command exists; $2 says what it is needed for.
need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"
}

# is_true accepts 1/true/yes/y/on in any case. (No ${1,,}: macOS ships bash 3.2.)
is_true() {
	case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
	1 | true | yes | y | on) return 0 ;;
	*) return 1 ;;
	esac
}

# require_vars fails naming the first empty variable.
require_vars() {
	local v
	for v in "$@"; do
		[[ -n "${!v:-}" ]] || die "$v is not set: run \`azd provision\` (or \`azd up\`) for this environment first"
	done
}

# load_azd_env exports the values of the current azd environment that are not already set. azd exports them to
# hooks itself; this makes the scripts work when run by hand too. Values in the caller's environment win.
load_azd_env() {
	command -v azd >/dev/null 2>&1 || return 0
	local values line key value unescaped
	values=$(azd env get-values 2>/dev/null) || return 0
	while IFS= read -r line; do
		[[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
		key=${BASH_REMATCH[1]}
		value=${BASH_REMATCH[2]}
		# azd writes KEY="value" the way godotenv does: a backslash before \ " ! $ and ` (and \n, \r for line breaks).
		# Undone in one pass from the left, so that an escaped backslash never joins the character after it.
		if [[ ${#value} -ge 2 && $value == \"*\" ]]; then
			value=${value:1:${#value}-2}
			unescaped=""
			while [[ $value == *\\* ]]; do
				unescaped+=${value%%\\*}
				value=${value#*\\}
				case ${value:0:1} in
				n) unescaped+=$'\n' ;;
				r) unescaped+=$'\r' ;;
				*) unescaped+=${value:0:1} ;;
				esac
				value=${value:1}
			done
			value=$unescaped$value
		fi
		if [[ -z "${!key+set}" ]]; then
			export "$key=$value"
		fi
	done <<<"$values"
}

# check_tenant stops when the Azure CLI is signed in to tenant $1 but the deployment (AZURE_TENANT_ID, an output of
# main.bicep) is in another: the app's managed identity exists only in its own tenant, and the service reads Graph
# there. $2 says what would go wrong. Without an azd environment there is nothing to compare with.
check_tenant() {
	local deployed=${AZURE_TENANT_ID:-}
	[[ -n $deployed ]] || return 0
	if [[ "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" != "$(printf '%s' "$deployed" | tr '[:upper:]' '[:lower:]')" ]]; then
		die "az is signed in to tenant $1, but this deployment is in tenant $deployed (AZURE_TENANT_ID): $2. Run: az login --tenant $deployed"
	fi
}

# build_cli builds the admin CLI for this machine.
build_cli() {
	need go "to build the azscep admin CLI (Go version in go.mod)"
	log "building $AZSCEP_CLI"
	(cd "$repo_root" && go build -o .local/bin/azscep ./handler) || die "go build failed"
}

# graph_url prints the Microsoft Graph root of the signed-in cloud without a trailing slash.
graph_url() {
	local url
	url=$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv 2>/dev/null) || url=""
	[[ -n $url ]] || url="https://graph.microsoft.com/"
	printf '%s\n' "${url%/}"
}

# graph_retry runs an az command on a directory object created moments ago and prints its output. Entra ID
# replicates a new application or service principal for a while (seconds, sometimes minutes), and until then Graph
# answers that it "does not exist" (Request_ResourceNotFound), that a new service principal's appId "does not
# reference a valid application object", or, assigning an app role to a managed identity created minutes ago, "Not a
# valid reference update". Those answers are retried, GRAPH_RETRY_TRIES times (default 12) 10 s apart; anything
# else, or the last try, fails as the command did.
graph_retry() {
	local tries=${GRAPH_RETRY_TRIES:-12} n=1 out rc err
	err=$(mktemp)
	while :; do
		out=$("$@" 2>"$err") && {
			rm -f "$err"
			[[ -z $out ]] || printf '%s\n' "$out"
			return 0
		}
		rc=$?
		if [[ $n -ge $tries ]] || ! grep -qiE 'does not exist|Request_ResourceNotFound|does not reference a valid application|Not a valid reference update' "$err"; then
			cat "$err" >&2
			rm -f "$err"
			return "$rc"
		fi
		log "Entra ID has not replicated a new object yet (try $n of $tries); retrying in 10s"
		n=$((n + 1))
		sleep 10
	done
}

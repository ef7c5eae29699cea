# azscep — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash

# Native Windows (cmd, PowerShell, Git Bash) is not supported: the recipes need bash, and a zip built there loses the
# handler's executable bit. WSL is Linux, where OS is not Windows_NT.
ifeq ($(OS),Windows_NT)
$(error azscep builds and deploys from Linux or macOS only: on Windows run make and azd inside WSL (Ubuntu); see docs/deployment.md, section 2)
endif
.DEFAULT_GOAL := help

AZURITE_VERSION := 3.37.0
# The browser bundle of MSAL the certificate console embeds (internal/console/assets/vendor; `make console-msal`).
MSAL_VERSION    := 5.31.0
LOCAL           := $(CURDIR)/.local
AZURITE_DIR     := $(LOCAL)/azurite
AZURITE_BIN     := $(AZURITE_DIR)/node_modules/.bin/azurite-table
AZURITE_PORT    ?= 10002
BIN             := $(LOCAL)/bin/azscep
FAKE            := $(LOCAL)/bin/intunefake
FAKE_PORT       ?= 7443
PORT            ?= 7071
FUZZTIME        ?= 30s
GO              ?= go
SUDO            := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Azurite's well-known development account (public; documented by Microsoft).
AZURITE_CONN := DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:$(AZURITE_PORT)/devstoreaccount1;

LOCAL_ENV := AZSCEP_MODE=local \
	FUNCTIONS_CUSTOMHANDLER_PORT=$(PORT) \
	AZSCEP_TABLES_CONNECTION='$(AZURITE_CONN)' \
	AZSCEP_LOCAL_KEY_DIR=$(LOCAL)/ca \
	AZSCEP_DEV_ISSUER=true \
	AZSCEP_PROFILE_SERVER='validity=397d;eku=serverAuth;dns=*' \
	AZSCEP_API_PROFILES=server \
	AZSCEP_SCEP_ENDPOINTS=static,intune

.PHONY: help
help:
	@echo "make run    start Azurite and the CA locally on http://127.0.0.1:$(PORT)"
	@echo "make test   vet, unit + integration tests (Azurite), real scepclient enrollment, fuzz seeds, zlint"
	@echo "make bench  benchmarks against the SPEC §6 targets (table + .local/bench.json)"
	@echo "make fuzz   run every fuzz target for FUZZTIME (default $(FUZZTIME))"
	@echo "make dist   the deployable package in dist/ (what azd zips)"
	@echo "make console-msal  re-vendor the pinned MSAL browser bundle of the certificate console"

# --- tools the tests need; installed here so a clean machine (and CI) gets them -------------------------------
$(AZURITE_BIN):
	@mkdir -p $(AZURITE_DIR)
	cd $(AZURITE_DIR) && npm install --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

.PHONY: azurite-install scepclient-install chromium-install jq-install shellcheck-install tools console-msal
azurite-install: $(AZURITE_BIN)

scepclient-install:
	@command -v scepclient >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq scep; }

# Debian's headless-capable Chromium runs the certificate console's browser tests (handler/console_test.go).
chromium-install:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# jq runs in the infra scripts (create-api-app.sh, grant-intune.sh), which internal/config's tests run against a fake az.
jq-install:
	@command -v jq >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq jq; }

# ShellCheck checks the infra scripts (internal/config's TestScriptsPassShellCheck), as docs/deployment.md says.
shellcheck-install:
	@command -v shellcheck >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq shellcheck; }

tools: azurite-install scepclient-install chromium-install jq-install shellcheck-install

# Reproduces the checked-in MSAL bundle from npm (the registry checks the tarball's integrity); a test compares
# the file with the version and SHA-256 pinned in internal/console/console.go.
console-msal:
	rm -rf $(LOCAL)/msal && mkdir -p $(LOCAL)/msal
	cd $(LOCAL)/msal && npm pack --silent --no-audit --no-fund @azure/msal-browser@$(MSAL_VERSION) >/dev/null && \
		tar xzf azure-msal-browser-$(MSAL_VERSION).tgz
	install -m 0644 $(LOCAL)/msal/package/lib/msal-browser.min.js internal/console/assets/vendor/msal-browser.min.js
	install -m 0644 $(LOCAL)/msal/package/LICENSE internal/console/assets/vendor/msal-browser.LICENSE.txt
	sha256sum internal/console/assets/vendor/msal-browser.min.js

# --- run --------------------------------------------------------------------------------------------------------
$(BIN): $(shell find handler internal -name '*.go' -not -name '*_test.go') go.mod go.sum
	@mkdir -p $(dir $@)
	$(GO) build -o $@ ./handler

$(FAKE): $(shell find internal/intune -name '*.go' -not -name '*_test.go') go.mod go.sum
	@mkdir -p $(dir $@)
	$(GO) build -o $@ ./internal/intune/intunefake/cmd/intunefake

.PHONY: run azurite-start intunefake-start
azurite-start: $(AZURITE_BIN)
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(AZURITE_PORT)) 2>/dev/null; then \
		mkdir -p $(LOCAL)/azurite-data; \
		echo "starting Azurite table service on 127.0.0.1:$(AZURITE_PORT) (log: .local/azurite.log)"; \
		nohup $(AZURITE_BIN) --tableHost 127.0.0.1 --tablePort $(AZURITE_PORT) --location $(LOCAL)/azurite-data \
			--disableTelemetry --skipApiVersionCheck >$(LOCAL)/azurite.log 2>&1 & \
		for i in $$(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$(AZURITE_PORT)) 2>/dev/null && break; sleep 0.2; done; \
	else \
		echo "using the Azurite already listening on 127.0.0.1:$(AZURITE_PORT) (AZURITE_PORT=… for another)"; \
	fi

# The Intune fake (Entra + Graph + Intune on https://127.0.0.1:$(FAKE_PORT)) backs the local `intune` endpoint.
intunefake-start: $(FAKE)
	@if ! (exec 3<>/dev/tcp/127.0.0.1/$(FAKE_PORT)) 2>/dev/null; then \
		echo "starting the Intune fake on https://127.0.0.1:$(FAKE_PORT) (log: .local/intunefake.log)"; \
		rm -f $(LOCAL)/intunefake.env; \
		nohup $(FAKE) -addr 127.0.0.1:$(FAKE_PORT) -cert $(LOCAL)/intunefake.pem -env $(LOCAL)/intunefake.env \
			>$(LOCAL)/intunefake.log 2>&1 & \
		for i in $$(seq 1 50); do [ -s $(LOCAL)/intunefake.env ] && break; sleep 0.2; done; \
	elif [ ! -s $(LOCAL)/intunefake.env ]; then \
		echo "127.0.0.1:$(FAKE_PORT) is in use, but .local/intunefake.env is missing: an Intune fake started before" \
			".local/ was deleted still runs (stop it), or another program has the port (make run FAKE_PORT=…)" >&2; \
		exit 1; \
	fi

run: azurite-start intunefake-start $(BIN)
	@set -a && . $(LOCAL)/intunefake.env && set +a && env $(LOCAL_ENV) $(BIN) ca init >/dev/null
	@set -a && . $(LOCAL)/intunefake.env && set +a && env $(LOCAL_ENV) $(BIN) local-help
	@set -a && . $(LOCAL)/intunefake.env && set +a && exec env $(LOCAL_ENV) $(BIN)

# --- test -------------------------------------------------------------------------------------------------------
.PHONY: test vet
vet:
	@unformatted=$$(gofmt -l handler internal); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

test: tools vet
	AZURITE_BIN=$(AZURITE_BIN) SCEPCLIENT=$$(command -v scepclient) $(GO) test -count=1 -timeout 12m ./...

# --- bench, fuzz, dist ------------------------------------------------------------------------------------------
# The peers `make bench` measures azscep against (issue 13), built from source with the Go toolchain, no cgo.
PEERS              := $(LOCAL)/peers
STEPCA_VERSION     := v0.30.2
SCEPSERVER_VERSION := v2.3.0

$(PEERS)/.step-ca-$(STEPCA_VERSION):
	@mkdir -p $(PEERS)
	CGO_ENABLED=0 GOBIN=$(PEERS) $(GO) install github.com/smallstep/certificates/cmd/step-ca@$(STEPCA_VERSION)
	@touch $@

$(PEERS)/.scepserver-$(SCEPSERVER_VERSION):
	@mkdir -p $(PEERS)
	CGO_ENABLED=0 GOBIN=$(PEERS) $(GO) install github.com/micromdm/scep/v2/cmd/scepserver@$(SCEPSERVER_VERSION)
	@touch $@

.PHONY: peers bench fuzz dist
peers: $(PEERS)/.step-ca-$(STEPCA_VERSION) $(PEERS)/.scepserver-$(SCEPSERVER_VERSION)

# About 17 minutes on 2 cores once the tools and peers are installed: the figures below, the side-by-side peer run
# (BenchmarkPeers, 7 alternating rounds, every server once on shared cores and once pinned to a CPU of its own),
# the latency budget and the scale-out run. The pinned turns need Linux and two CPUs; `make bench BENCH_PIN=0`
# leaves them out (their rows then read "not measured").
BENCH_PIN ?= $(shell [ "$$(uname -s)" = Linux ] && [ "$$(nproc)" -ge 2 ] && echo 1 || echo 0)
bench: tools peers
	@mkdir -p $(LOCAL)
	set -o pipefail; AZURITE_BIN=$(AZURITE_BIN) $(GO) test -run '^$$' -bench . -benchtime 2s -timeout 20m ./internal/... | tee $(LOCAL)/bench.txt
	set -o pipefail; AZURITE_BIN=$(AZURITE_BIN) AZSCEP_PEERS_DIR=$(PEERS) AZSCEP_BENCH_PIN=$(BENCH_PIN) $(GO) test -run '^$$' -bench . -benchtime 3s -timeout 40m ./handler | tee $(LOCAL)/bench-handler.txt
	$(GO) run ./internal/loadgen/report/benchreport -json $(LOCAL)/bench.json $(LOCAL)/bench.txt $(LOCAL)/bench-handler.txt

fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

DIST ?= dist
dist:
	rm -rf $(DIST) && mkdir -p $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w" -o $(DIST)/azscep ./handler
	chmod 0755 $(DIST)/azscep
	install -m 0644 host.json $(DIST)/host.json
	for f in functions/*/; do n=$$(basename $$f); install -d -m 0755 $(DIST)/$$n && install -m 0644 $$f/function.json $(DIST)/$$n/; done
	@echo "$(DIST)/ is ready for azd deploy"

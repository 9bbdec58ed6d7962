# sessionstore-operator. `make help` lists the targets.

# The build's version: the git tag, or the commit, marked -dirty when the tree
# has changes. It is stamped into the binary (--version) and tags the image,
# which the cleanup CronJobs run: never :latest.
# Read once (:=): others commit while a long target runs, and the image's
# tag must name the image that was built.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
LDFLAGS := -X github.com/sessionstore/sessionstore-operator/internal/version.Version=$(VERSION)
IMG ?= ghcr.io/sessionstore/sessionstore-operator:$(VERSION)
BIN_DIR := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN_DIR)/controller-gen
ENVTEST_ASSETS := $(BIN_DIR)/k8s
GO_TEST_FLAGS ?=
# The tests run under the race detector: the manager's workers, the prober
# and the gate share state. Kept apart from GO_TEST_FLAGS, which .ci/run
# sets to -v; RACE= turns it off for a quick run.
RACE ?= -race

export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS)

.DEFAULT_GOAL := help
.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC from the markers in api/ and controllers/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases
	hack/sync-chart.sh

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: tools
tools: ## Build controller-gen, etcd, kube-apiserver and FerretDB into bin/ (first run ~7 minutes).
	hack/install-tools.sh

.PHONY: services
services: ## Start Redis, PostgreSQL, memcached and FerretDB on loopback, installing what is missing.
	hack/start-services.sh

.PHONY: test
test: tools manifests generate vet ## Build what the tests need, start the servers, run every test, then the real-node e2e.
	hack/check-generated.sh
	@# The servers' packages install while the node's binaries build (CPU).
	hack/start-services.sh & services=$$!; hack/install-node.sh; built=$$?; wait $$services && exit $$built
	go test $(RACE) $(GO_TEST_FLAGS) ./... -count=1 -timeout 30m
	SESSIONSTORE_MYSQL_TEST_ADDR=127.0.0.1:3307 go test $(RACE) $(GO_TEST_FLAGS) ./internal/sessionstore/mysql -count=1
	cd hack/image && go test $(RACE) $(GO_TEST_FLAGS) ./... -count=1
	$(MAKE) --no-print-directory e2e

.PHONY: e2e
e2e: image ## On a real single-node cluster (root, Linux): the image installed by kustomize, then Helm; every cleanup a real Pod.
	IMG='$(IMG)' hack/e2e/run.sh

.PHONY: node-up
node-up: ## Bring up the real single-node cluster alone (KUBECONFIG=/tmp/sessionstore-e2e/kubeconfig).
	hack/install-node.sh
	hack/e2e/node.sh up

.PHONY: node-down
node-down: ## Tear the real node down and leave the host as found.
	hack/e2e/node.sh down

.PHONY: bench
bench: tools services ## Run the benchmarks on stores they fill themselves, then the manager at scale (see docs/benchmarks.md).
	go test ./internal/sessionstore/... -run '^$$' -bench . -benchtime 1x -count 3 -timeout 60m | tee bin/bench.txt
	go build -o bin/manager . && go build -o bin/scale-harness ./hack/scale && mkdir -p bin/scale
	bin/scale-harness -out bin/scale | tee bin/scale/results.txt

.PHONY: demo
demo: ## On a real node where the machine allows (root, Linux), else a local control plane: the samples, real cleanups, status, metrics; stop.
	hack/demo.sh

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the operator binary into bin/manager.
	go build -trimpath -ldflags '$(LDFLAGS)' -o bin/manager .

.PHONY: run
run: manifests generate ## Run the operator against the cluster of your kubeconfig.
	go run . --leader-elect=false

# The image's binary: static, no paths of this machine, stamped with VERSION.
IMAGE_BIN := $(BIN_DIR)/image/sessionstore-operator
SOURCE_URL := https://github.com/sessionstore/sessionstore-operator
ifeq ($(origin REVISION),undefined)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
endif
# File and image times from the commit, so the same commit gives the same image.
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
endif

.PHONY: image
image: ## Build the image as a docker-save tarball, bin/image.tar tagged $(IMG), with no Docker engine.
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(IMAGE_BIN) .
	cd hack/image && go build -o $(BIN_DIR)/image-builder .
	$(BIN_DIR)/image-builder -binary $(IMAGE_BIN) -tag '$(IMG)' -out $(BIN_DIR)/image.tar \
	  -created $(SOURCE_DATE_EPOCH) \
	  -label org.opencontainers.image.title=sessionstore-operator \
	  -label org.opencontainers.image.version=$(VERSION) \
	  -label org.opencontainers.image.revision=$(REVISION) \
	  -label org.opencontainers.image.source=$(SOURCE_URL)
	@echo "bin/image.tar: $(IMG), $$(du -m $(BIN_DIR)/image.tar | cut -f1) MB"

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the cluster of your kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and every SessionStore) from the cluster.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator with image $(IMG) to the cluster of your kubeconfig.
	@tmp=$$(hack/config-with-image.sh '$(IMG)') && \
	  kubectl apply --server-side -k $$tmp/config/default; status=$$?; rm -rf $$tmp; exit $$status

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	kubectl delete --ignore-not-found -k config/default

.PHONY: controller-gen
controller-gen:
	@hack/install-tools.sh controller-gen

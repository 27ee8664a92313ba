# Sourced by bench/run.sh and bench/profile.sh: the Strait manifest both benchmarks use
# (Service + EndpointSlice + Ingress sending every request to the backend on $BACKEND_PORT).
# shellcheck shell=bash
manifest() { # $1 = file, $2 = extra host rule name (or empty): every request -> backend
  {
    cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: be, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: be-1, namespace: default, labels: {kubernetes.io/service-name: be}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench, namespace: default}
spec:
  ingressClassName: strait
  defaultBackend: {service: {name: be, port: {number: 80}}}
YAML
    [ -z "$2" ] || cat <<YAML
  rules:
  - host: $2.bench.local
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: be, port: {number: 80}}}}]}
YAML
  } >"$1"
}

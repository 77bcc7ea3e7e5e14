#!/usr/bin/env bash
# Builds the real Eureka parts tests/real_eureka.rs runs against: Spring Cloud's Eureka
# server and a Spring Boot client (Maven, into it/*/target), the OpenID provider the access
# tests log in against (it/auth-server, Spring Authorization Server), and py-eureka-client in a
# virtualenv (it/.venv). Safe to run again; names what is missing instead of failing later.
set -euo pipefail
cd "$(dirname "$0")"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "it/build.sh: '$1' is missing: $2" >&2; exit 1; }
}
need java "a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)"
need mvn "Maven (Debian: apt-get install maven)"
need python3 "Python 3 (Debian: apt-get install python3 python3-venv)"

mvn -q -B package -DskipTests
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || { echo "it/build.sh: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
.venv/bin/pip install -q --disable-pip-version-check -r py-client/requirements.txt
echo "it/build.sh: eureka-server, spring-client, auth-server and the py-eureka-client venv are ready"

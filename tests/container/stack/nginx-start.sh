#!/bin/sh
# The nginx stand-in's start (nginx.Containerfile): templates rendered with
# the variables that are set, as the nginx image does, then nginx itself.
set -eu
vars=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
mkdir -p /etc/nginx/conf.d
for t in /etc/nginx/templates/*.template; do
	[ -e "$t" ] || continue
	out=/etc/nginx/conf.d/$(basename "$t" .template)
	envsubst "$vars" <"$t" >"$out"
	echo "nginx-start: rendered $t to $out" >&2
done
exec nginx -g 'daemon off;'

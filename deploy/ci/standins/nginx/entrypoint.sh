#!/bin/sh
# What the official nginx image's entrypoint does with templates: substitute only variables that are
# set in the environment (nginx's own $variables stay), one conf.d file per template.
set -eu
templates=/etc/nginx/templates
if [ -d "$templates" ]; then
  defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
  for template in "$templates"/*.template; do
    [ -f "$template" ] || continue
    output="/etc/nginx/conf.d/$(basename "$template" .template)"
    envsubst "$defined" < "$template" > "$output"
    echo "rendered $template -> $output" >&2
  done
fi
exec "$@"

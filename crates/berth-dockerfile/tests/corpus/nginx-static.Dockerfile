FROM node:20-alpine AS build
WORKDIR /src
COPY package.json pnpm-lock.yaml ./
RUN corepack enable && pnpm install --frozen-lockfile
COPY . .
RUN pnpm build

FROM nginx:1.27-alpine
COPY --from=build --chown=nginx:nginx /src/dist /usr/share/nginx/html
COPY <<EOF /etc/nginx/conf.d/default.conf
server {
    listen 80;
    location / {
        root /usr/share/nginx/html;
        try_files \$uri /index.html;
    }
}
EOF
EXPOSE 80
HEALTHCHECK --interval=10s --timeout=2s CMD wget -qO- http://127.0.0.1/ || exit 1
STOPSIGNAL SIGQUIT

# The gateway image: one image for every role (api, worker, migrate); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY kensa_gql ./kensa_gql
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /app kensa \
 && mkdir -p /data/media \
 && chown kensa /data/media

# Never root at run time; media lives on a volume shared by the api and worker containers.
USER kensa
ENV KENSA_MEDIA_DIR=/data/media
VOLUME ["/data/media"]
EXPOSE 8000

ENTRYPOINT ["kensa-gql"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

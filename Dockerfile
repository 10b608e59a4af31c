# memsaga's worker, relay, projector and CLI in one image; the command picks the role.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY eventstore ./eventstore
COPY sagas ./sagas
COPY workflows ./workflows
COPY activities ./activities
COPY adapters ./adapters
COPY projections ./projections
COPY memsaga ./memsaga
# The benchmarks too (as in the wheel): without the bench extra, `memsaga bench` says to install it.
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --create-home memsaga
USER memsaga
ENTRYPOINT ["memsaga"]
CMD ["--help"]

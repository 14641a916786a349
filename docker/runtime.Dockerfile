# The Bandwidth Meter local runtime (`python -m localrun`) as a container, for docker compose.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt requirements-dev.txt pyproject.toml ./
COPY bwmeter ./bwmeter
RUN pip install --no-cache-dir -r requirements-dev.txt
COPY app.py ./
COPY .chalice ./.chalice
COPY chalicelib ./chalicelib
COPY localrun ./localrun
ENV API_HOST=0.0.0.0 API_PORT=8000 PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=12 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=2)"
CMD ["python", "-m", "localrun"]

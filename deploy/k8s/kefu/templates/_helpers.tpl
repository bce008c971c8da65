{{/* Names, labels and the checks that values.schema.json cannot express. */}}

{{- define "kefu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-kefu, or just the release name when it already contains the chart name. */}}
{{- define "kefu.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Resource name of one service: <fullname>-<service>. Call with (dict "root" $ "svc" "nlu"). */}}
{{- define "kefu.componentName" -}}
{{- printf "%s-%s" (include "kefu.fullname" .root) .svc -}}
{{- end -}}

{{- define "kefu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kefu.labels" -}}
helm.sh/chart: {{ include "kefu.chart" . }}
app.kubernetes.io/name: {{ include "kefu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kefu
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one service; call with (dict "root" $ "svc" "nlu"). */}}
{{- define "kefu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kefu.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{/* All labels of one service's resources; call with (dict "root" $ "svc" "nlu"). */}}
{{- define "kefu.componentLabels" -}}
{{ include "kefu.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "kefu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kefu.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kefu.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "kefu.modelsImage" -}}
{{- printf "%s:%s" .Values.models.image.repository (default .Chart.AppVersion .Values.models.image.tag) -}}
{{- end -}}

{{/* Address reply dials for the OrderService: the orders Service's DNS name and gRPC port. */}}
{{- define "kefu.ordersAddr" -}}
{{- printf "%s.%s.svc:%d" (include "kefu.componentName" (dict "root" . "svc" "orders")) .Release.Namespace (int .Values.services.orders.grpcPort) -}}
{{- end -}}

{{- define "kefu.kafkaUsesSasl" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}true{{ end -}}
{{- end -}}

{{- define "kefu.kafkaUsesTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* True when the TLS secret is mounted (TLS on and a secret named). */}}
{{- define "kefu.kafkaTlsMounted" -}}
{{- if and (include "kefu.kafkaUsesTls" .) .Values.kafka.tls.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Path of one file of the mounted TLS secret, or "" when the key is unset. */}}
{{- define "kefu.kafkaTlsPath" -}}
{{- if and (include "kefu.kafkaTlsMounted" .root) .key -}}
{{- printf "%s/%s" (trimSuffix "/" .root.Values.kafka.tls.mountPath) .key -}}
{{- end -}}
{{- end -}}

{{/* Pods this service runs at most, for the partition check. */}}
{{- define "kefu.maxPods" -}}
{{- if .cfg.keda.enabled -}}{{ .cfg.keda.maxReplicas }}
{{- else if .cfg.autoscaling.enabled -}}{{ .cfg.autoscaling.maxReplicas }}
{{- else -}}{{ .cfg.replicas }}
{{- end -}}
{{- end -}}

{{/*
Checks across keys, run once (from the ConfigMap). Each failure says which key to change.
*/}}
{{- define "kefu.validate" -}}
{{- $v := .Values -}}
{{- if not $v.mongo.existingSecret -}}
{{- fail "mongo.existingSecret is empty: create a Secret holding the MongoDB URI (kubectl create secret generic kefu-mongo --from-literal=uri=mongodb://...) and set mongo.existingSecret to its name" -}}
{{- end -}}
{{- if include "kefu.kafkaUsesSasl" . -}}
{{- if not $v.kafka.sasl.mechanism -}}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.mechanism to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if not $v.kafka.sasl.existingSecret -}}
{{- fail (printf "kafka.securityProtocol is %s: set kafka.sasl.existingSecret to a Secret with keys %s and %s" $v.kafka.securityProtocol $v.kafka.sasl.usernameKey $v.kafka.sasl.passwordKey) -}}
{{- end -}}
{{- end -}}
{{- if and (or $v.kafka.tls.certKey $v.kafka.tls.keyKey) (not (and $v.kafka.tls.certKey $v.kafka.tls.keyKey)) -}}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS needs both the client certificate and its key)" -}}
{{- end -}}
{{- if and (eq $v.models.source "pvc") (not $v.models.pvc.existingClaim) -}}
{{- fail "models.source is pvc: set models.pvc.existingClaim to a PersistentVolumeClaim holding the model tree (or use models.source=image)" -}}
{{- end -}}
{{- if not $v.services.orders.enabled -}}
{{- if $v.services.reply.enabled -}}
{{- fail "services.reply needs services.orders (reply calls the OrderService): enable services.orders" -}}
{{- end -}}
{{- end -}}
{{- range $name, $cfg := $v.services -}}
{{- if $cfg.enabled -}}
{{- if and $cfg.keda.enabled (not $cfg.consumerTopic) -}}
{{- fail (printf "services.%s.keda.enabled: %s consumes no Kafka topic, so there is no lag to scale on; use services.%s.autoscaling" $name $name $name) -}}
{{- end -}}
{{- if and $cfg.keda.enabled (gt (int $cfg.keda.minReplicas) (int $cfg.keda.maxReplicas)) -}}
{{- fail (printf "services.%s.keda.minReplicas (%v) is above keda.maxReplicas (%v)" $name $cfg.keda.minReplicas $cfg.keda.maxReplicas) -}}
{{- end -}}
{{- if and $cfg.autoscaling.enabled (gt (int $cfg.autoscaling.minReplicas) (int $cfg.autoscaling.maxReplicas)) -}}
{{- fail (printf "services.%s.autoscaling.minReplicas (%v) is above autoscaling.maxReplicas (%v)" $name $cfg.autoscaling.minReplicas $cfg.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if $cfg.consumerTopic -}}
{{- $max := include "kefu.maxPods" (dict "cfg" $cfg) | int -}}
{{- if gt $max (int $v.kafka.topicPartitions) -}}
{{- fail (printf "services.%s can run %d pods but kafka.topicPartitions is %d: one partition is consumed by one member of consumer group kefu-%s, so pods beyond the partition count sit idle. Lower the replicas/maxReplicas of services.%s or raise kafka.topicPartitions (and the topics' partitions)" $name $max (int $v.kafka.topicPartitions) $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The KEFU_* settings shared by every service, as YAML (ConfigMap data, topics Job env). */}}
{{- define "kefu.settingsData" -}}
KEFU_KAFKA_BOOTSTRAP: {{ .Values.kafka.bootstrap | quote }}
KEFU_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
KEFU_KAFKA_SASL_MECHANISM: {{ ternary .Values.kafka.sasl.mechanism "" (eq (include "kefu.kafkaUsesSasl" .) "true") | quote }}
KEFU_KAFKA_SSL_CAFILE: {{ include "kefu.kafkaTlsPath" (dict "root" . "key" .Values.kafka.tls.caKey) | quote }}
KEFU_KAFKA_SSL_CERTFILE: {{ include "kefu.kafkaTlsPath" (dict "root" . "key" .Values.kafka.tls.certKey) | quote }}
KEFU_KAFKA_SSL_KEYFILE: {{ include "kefu.kafkaTlsPath" (dict "root" . "key" .Values.kafka.tls.keyKey) | quote }}
KEFU_TOPIC_PARTITIONS: {{ .Values.kafka.topicPartitions | quote }}
KEFU_TOPIC_REPLICATION: {{ .Values.kafka.topicReplication | quote }}
KEFU_MONGO_DB: {{ .Values.mongo.database | quote }}
KEFU_ORDERS_ADDR: {{ include "kefu.ordersAddr" . | quote }}
KEFU_ORDERS_DEADLINE_MS: {{ .Values.config.ordersDeadlineMs | quote }}
KEFU_PRODUCER_LINGER_MS: {{ .Values.config.producerLingerMs | quote }}
KEFU_INFERENCE_THREADS: {{ .Values.config.inferenceThreads | quote }}
KEFU_WEB_HOST: "0.0.0.0"
KEFU_STATE_DIR: "/var/lib/kefu/state"
KEFU_CACHE_DIR: "/var/lib/kefu/cache"
KEFU_MODEL_DIR: {{ .Values.models.mountPath | quote }}
KEFU_MAX_TEXT_CHARS: {{ .Values.config.maxTextChars | quote }}
KEFU_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
KEFU_LOG_FORMAT: {{ .Values.config.logFormat | quote }}
{{- end -}}

{{/* Env entries of the SASL credentials (from the existing Secret), when SASL is on. */}}
{{- define "kefu.kafkaSaslEnv" -}}
{{- if include "kefu.kafkaUsesSasl" . -}}
- name: KEFU_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KEFU_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end -}}
{{- end -}}

{{/* volumeMounts entry of the Kafka TLS Secret, when it is mounted. */}}
{{- define "kefu.kafkaTlsMount" -}}
{{- if include "kefu.kafkaTlsMounted" . -}}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tls.mountPath }}
  readOnly: true
{{- end -}}
{{- end -}}

{{/* volumes entry of the Kafka TLS Secret, readable by the pod's fsGroup only. */}}
{{- define "kefu.kafkaTlsVolume" -}}
{{- if include "kefu.kafkaTlsMounted" . -}}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end -}}
{{- end -}}

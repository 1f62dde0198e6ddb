declare module 'parse-prometheus-text-format' {
  /** Parses the Prometheus text format into metric families (see the package README). */
  export default function parsePrometheusTextFormat(text: string): unknown[];
}

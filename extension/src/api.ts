/**
 * The one typed request helper: every call of the sidebar to the ct-notebooks API goes through it.
 * It knows nothing of JupyterLab: the plugin passes a fetcher built on ServerConnection (auth, XSRF).
 */

export const NAMESPACE = 'ct-notebooks/api';

export type Fetcher = (url: string, init: RequestInit) => Promise<Response>;

/** An API failure: HTTP status, machine code and a message fit for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type RunStatus =
  'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'kernel_died' | 'cancelled' | 'blocked' | 'damaged';

export interface IRunSummary {
  run_id: string;
  pipeline: string;
  status: RunStatus;
  outcome: 'promoted' | 'rejected' | 'none';
  outcome_reason: string;
  version: number | null;
  trigger: string;
  reason: string;
  created_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  failed_stage: string | null;
  error: string | null;
  stages: { name: string; status: string }[];
}

export interface IStageDetail {
  name: string;
  status: string;
  duration_s: number | null;
  notebook_path: string | null;
  error: { ename: string; evalue: string; cell_index: number | null } | null;
  /** what the stage recorded (ingest: `quarantined`; validate: `warnings`) */
  outputs?: Record<string, unknown>;
}

export interface IRunDetail extends Omit<IRunSummary, 'stages'> {
  folder_path: string | null;
  files: string[];
  attempts: number;
  parameters: Record<string, Record<string, unknown>>;
  stages: IStageDetail[];
}

export interface IRunPage {
  runs: IRunSummary[];
  limit: number;
  offset: number;
  has_more: boolean;
}

export interface IParameterSpec {
  name: string;
  type: string;
  default: string | null;
  configured: string | null;
  help: string;
}

export interface IProject {
  found: boolean;
  message?: string;
  name?: string;
  path?: string | null;
  model?: string;
  primary_metric?: string;
  pipelines?: {
    name: string;
    stages: { name: string; notebook: string; notebook_path: string | null; parameters: IParameterSpec[] }[];
  }[];
}

export interface IModelVersion {
  version: number;
  aliases: string[];
  metrics: Record<string, number | null>;
  /** MLflow version tags; the gate's holdout metrics are ``ct.metric.<name>`` */
  tags?: Record<string, string>;
  gate: string | null;
  gate_reason: string | null;
  ct_run_id: string | null;
  created_at: string;
}

export interface IAliasMove {
  at: string;
  alias: string;
  from_version: number | null;
  to_version: number | null;
  actor: string;
  reason: string;
  action: string;
}

export interface IModels {
  model: string;
  primary_metric: string;
  aliases: Record<string, number>;
  versions: IModelVersion[];
  audit: IAliasMove[];
}

export interface IDriftBatch {
  run_id: string;
  created_at: string;
  batch: string | null;
  drift_share: number;
  dataset_drift: boolean;
  share_threshold: number | null;
  drifted_columns: string[];
  report: string | null;
}

export interface IDriftColumn {
  column: string;
  column_type?: string;
  stattest?: string;
  score?: number | null;
  threshold?: number | null;
  drifted: boolean;
}

export interface IDrift {
  batches: IDriftBatch[];
  latest: (IDriftBatch & { columns: IDriftColumn[] }) | null;
}

export interface IDaemon {
  available: boolean;
  running?: boolean;
  message?: string;
  [key: string]: unknown;
}

export interface ITriggers {
  config: Record<string, unknown>;
  next_fire_times: Record<string, unknown>[];
  decisions: Record<string, unknown>[];
  daemon: IDaemon;
}

/** A pipeline version: its id, the sha256 of each file, the git commit when the project is a repository. */
export interface IPipelineVersion {
  version: string;
  files?: Record<string, string>;
  commit?: string | null;
  [key: string]: unknown;
}

/** One recorded ``ctn pipeline check`` of a pipeline version. */
export interface IPipelineCheck {
  id?: string;
  version?: string;
  commit?: string | null;
  started_at?: string;
  finished_at?: string;
  duration_s?: number;
  actor?: string;
  passed?: boolean;
  cancelled?: boolean;
  deployed?: boolean;
  error?: string;
  [key: string]: unknown;
}

/** GET /pipeline: the working copy against the deployed version, and the newest checks (newest last). */
export interface IPipelineTrack {
  working: IPipelineVersion;
  deployed: IPipelineVersion | null;
  changed_files: string[];
  up_to_date: boolean;
  require_check: boolean;
  last_check: IPipelineCheck | null;
  checks: IPipelineCheck[];
}

/** Runs, wall and kernel CPU seconds, archive bytes and cost (null without a price) of a group of runs. */
export interface ICostEntry {
  runs: number;
  wall_s: number;
  cpu_s: number;
  archive_bytes: number;
  cost: number | null;
}

/** One pipeline's last 24 hours beside the daily budget of rule-started runs. */
export interface ICostDay {
  runs_last_24h: number;
  cpu_s_last_24h: number;
  cost_last_24h: number | null;
  max_per_day: number | null;
  max_cost_per_day: number | null;
}

/** GET /costs: totals per pipeline and per trigger kind, and each pipeline's last day. */
export interface ICosts {
  pipelines: Record<string, ICostEntry>;
  triggers: Record<string, ICostEntry>;
  runs_counted: number;
  currency: string;
  cpu_hour_price: number | null;
  budget: Record<string, ICostDay>;
}

export interface IStartRun {
  pipeline: string;
  parameters?: Record<string, Record<string, unknown>>;
  reason?: string;
}

/** Query string from defined values only. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

/** ``base`` + namespace + path segments, each segment URL-encoded (slashes inside a file path kept). */
export function apiUrl(baseUrl: string, path: string): string {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const [route, qs] = path.split('?', 2);
  const encoded = route
    .split('/')
    .filter(s => s.length > 0)
    .map(s => (s === '.' || s === '..' ? s.replace(/\./g, '%2E') : encodeURIComponent(s)))
    .join('/');
  return `${base}${NAMESPACE}/${encoded}${qs !== undefined ? `?${qs}` : ''}`;
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly fetcher: Fetcher
  ) {}

  /** One request; JSON in and out; any failure becomes an ApiError. */
  async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    let response: Response;
    try {
      response = await this.fetcher(apiUrl(this.baseUrl, path), init);
    } catch (reason) {
      throw new ApiError(0, 'network', `the Jupyter server cannot be reached (${String(reason)})`);
    }
    const text = await response.text();
    let data: unknown = null;
    if (text.length > 0) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const body = (data ?? {}) as { error?: string; message?: string };
      throw new ApiError(
        response.status,
        body.error ?? 'http_error',
        body.message ?? `the server answered ${response.status} ${response.statusText}`.trim()
      );
    }
    return data as T;
  }

  post<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.request<T>(path, {
      method: 'POST',
      body: JSON.stringify(body ?? {}),
      headers: { 'Content-Type': 'application/json', ...headers }
    });
  }

  project(): Promise<IProject> {
    return this.request<IProject>('project');
  }
  runs(filters: { pipeline?: string; status?: string; limit?: number; offset?: number } = {}): Promise<IRunPage> {
    return this.request<IRunPage>(`runs${query(filters)}`);
  }
  run(runId: string): Promise<IRunDetail> {
    return this.request<IRunDetail>(`runs/${runId}`);
  }
  startRun(body: IStartRun, idempotencyKey: string): Promise<{ run_id: string; status: string }> {
    return this.post('runs', body, { 'Idempotency-Key': idempotencyKey });
  }
  resume(runId: string): Promise<{ run_id: string }> {
    return this.post(`runs/${runId}/resume`, {});
  }
  cancel(runId: string): Promise<{ run_id: string }> {
    return this.post(`runs/${runId}/cancel`, {});
  }
  models(): Promise<IModels> {
    return this.request<IModels>('models');
  }
  promote(version: number, reason?: string): Promise<IAliasMove> {
    return this.post('models/promote', reason ? { version, reason } : { version });
  }
  rollback(toVersion?: number, reason?: string): Promise<IAliasMove> {
    const body: Record<string, unknown> = {};
    if (toVersion !== undefined) {
      body.to_version = toVersion;
    }
    if (reason) {
      body.reason = reason;
    }
    return this.post('models/rollback', body);
  }
  drift(): Promise<IDrift> {
    return this.request<IDrift>('drift');
  }
  triggers(): Promise<ITriggers> {
    return this.request<ITriggers>('triggers');
  }
  pipeline(): Promise<IPipelineTrack> {
    return this.request<IPipelineTrack>('pipeline');
  }
  costs(): Promise<ICosts> {
    return this.request<ICosts>('costs');
  }
  daemon(action: 'start' | 'stop'): Promise<IDaemon> {
    return this.post(`daemon/${action}`, {});
  }
  /** URL of a run's file (report HTML), for a sandboxed iframe. */
  fileUrl(runId: string, relative: string): string {
    return apiUrl(this.baseUrl, `runs/${runId}/files/${relative}`);
  }
}

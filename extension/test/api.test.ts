import { ApiClient, ApiError, apiUrl, query } from '../src/api';

type Call = { url: string; init: RequestInit };

function fakeFetch(status: number, body: unknown, calls: Call[] = []) {
  return async (url: string, init: RequestInit): Promise<Response> => {
    calls.push({ url, init });
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return {
      ok: status >= 200 && status < 300,
      status,
      statusText: 'status',
      text: async () => text
    } as Response;
  };
}

describe('apiUrl', () => {
  it('joins base, namespace and encoded segments', () => {
    expect(apiUrl('/lab/', 'runs')).toBe('/lab/ct-notebooks/api/runs');
    expect(apiUrl('http://h/base', 'runs/a b/files/reports/x.html')).toBe(
      'http://h/base/ct-notebooks/api/runs/a%20b/files/reports/x.html'
    );
    expect(apiUrl('/', 'runs?limit=2')).toBe('/ct-notebooks/api/runs?limit=2');
  });
  it('cannot climb out of the namespace', () => {
    expect(apiUrl('/', 'runs/../../api/contents')).toBe('/ct-notebooks/api/runs/%2E%2E/%2E%2E/api/contents');
    expect(apiUrl('/', 'runs/./x')).toBe('/ct-notebooks/api/runs/%2E/x');
  });
});

describe('query', () => {
  it('drops empty values and encodes', () => {
    expect(query({ pipeline: 'train', status: undefined, limit: 5, trigger: '' })).toBe('?pipeline=train&limit=5');
    expect(query({ reason: 'a&b' })).toBe('?reason=a%26b');
    expect(query({})).toBe('');
  });
});

describe('ApiClient', () => {
  it('returns JSON on success', async () => {
    const calls: Call[] = [];
    const client = new ApiClient('/', fakeFetch(200, { runs: [], limit: 30, offset: 0, has_more: false }, calls));
    const page = await client.runs({ limit: 30, pipeline: 'train' });
    expect(page.has_more).toBe(false);
    expect(calls[0].url).toBe('/ct-notebooks/api/runs?limit=30&pipeline=train');
  });

  it('turns error bodies into ApiError with the server message', async () => {
    const client = new ApiClient('/', fakeFetch(409, { error: 'promotion_refused', message: 'gate rejected v3' }));
    await expect(client.promote(3)).rejects.toMatchObject({
      status: 409,
      code: 'promotion_refused',
      message: 'gate rejected v3'
    });
  });

  it('survives non-JSON error bodies', async () => {
    const client = new ApiClient('/', fakeFetch(502, '<html>bad gateway</html>'));
    const error = await client.models().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe('http_error');
    expect(error.message).toContain('502');
  });

  it('reports network failures', async () => {
    const client = new ApiClient('/', async () => {
      throw new TypeError('Failed to fetch');
    });
    await expect(client.project()).rejects.toMatchObject({ status: 0, code: 'network' });
  });

  it('posts JSON with the Idempotency-Key header', async () => {
    const calls: Call[] = [];
    const client = new ApiClient('/base/', fakeFetch(202, { run_id: 'r', status: 'queued' }, calls));
    await client.startRun({ pipeline: 'train', parameters: { ingest: { holdout_fraction: 0.3 } } }, 'key-1');
    expect(calls[0].url).toBe('/base/ct-notebooks/api/runs');
    expect(calls[0].init.method).toBe('POST');
    expect((calls[0].init.headers as Record<string, string>)['Idempotency-Key']).toBe('key-1');
    expect(JSON.parse(calls[0].init.body as string)).toEqual({
      pipeline: 'train',
      parameters: { ingest: { holdout_fraction: 0.3 } }
    });
  });

  it('sends rollback and promote bodies the API accepts', async () => {
    const calls: Call[] = [];
    const client = new ApiClient('/', fakeFetch(200, {}, calls));
    await client.rollback();
    await client.rollback(2, 'why');
    await client.promote(4);
    expect(calls.map(c => JSON.parse(c.init.body as string))).toEqual([
      {},
      { to_version: 2, reason: 'why' },
      { version: 4 }
    ]);
  });

  it('builds report URLs inside the namespace', () => {
    const client = new ApiClient('/', fakeFetch(200, {}));
    expect(client.fileUrl('20261126T101500Z-3fa9c1', 'reports/data-drift.html')).toBe(
      '/ct-notebooks/api/runs/20261126T101500Z-3fa9c1/files/reports/data-drift.html'
    );
  });
});

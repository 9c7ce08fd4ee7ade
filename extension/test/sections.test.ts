/**
 * @jest-environment jsdom
 */
import type { IModels, IProject } from '../src/api';
import { ModelsSection } from '../src/sections/models';
import { RunFormSection } from '../src/sections/runForm';
import { RunsSection } from '../src/sections/runs';
import { panelContext as context } from './context';

const EVIL = '<img src=x onerror="window.__pwned=1">';

function pipelines(extra: { name: string; default: string | null }[] = []): NonNullable<IProject['pipelines']> {
  const param = (name: string, def: string | null, type = 'None') => ({
    name,
    type,
    default: def,
    configured: null,
    help: ''
  });
  return [
    {
      name: 'monitor',
      stages: [
        {
          name: 'score',
          notebook: 'score.ipynb',
          notebook_path: null,
          parameters: [
            param('batch', 'None'),
            param('threshold', '0.5', ''),
            ...extra.map(e => param(e.name, e.default))
          ]
        }
      ]
    },
    {
      name: 'train',
      stages: [
        { name: 'ingest', notebook: 'ingest.ipynb', notebook_path: null, parameters: [param('cutoff', 'None', 'str')] }
      ]
    }
  ];
}

const input = (root: HTMLElement, selector: string) => root.querySelector(selector) as HTMLInputElement;

describe('Run form', () => {
  it('shows no "None" under parameter names, only real types, and defaults in the inputs', () => {
    const form = new RunFormSection(context());
    form.setPipelines(pipelines());
    const labels = Array.from(form.node.querySelectorAll('.ct-fields label span')).map(s => s.textContent);
    expect(labels).toEqual(['batch ', 'threshold ']);
    expect(form.node.textContent).not.toContain('None');
    expect(input(form.node, '[data-param="score.threshold"]').value).toBe('0.5');
    form.node.querySelector('select')!.value = 'train';
    form.node.querySelector('select')!.dispatchEvent(new Event('change'));
    expect(form.node.querySelector('.ct-param-type')!.textContent).toBe('str');
  });

  it('keeps what is typed when a refresh brings the same pipelines', () => {
    const form = new RunFormSection(context());
    expect(form.setPipelines(pipelines())).toBe(true);
    const batch = input(form.node, '[data-param="score.batch"]');
    batch.value = 'batch-07.csv';
    batch.dispatchEvent(new Event('input'));
    input(form.node, '.ct-reason').value = 'typing a reason';
    input(form.node, '.ct-idempotency-key').value = 'my-key-1';
    for (let i = 0; i < 3; i++) {
      expect(form.setPipelines(pipelines())).toBe(false); // a fresh, equal copy from the server
    }
    expect(form.builds).toBe(1);
    expect(input(form.node, '[data-param="score.batch"]')).toBe(batch);
    expect(batch.value).toBe('batch-07.csv');
    expect(input(form.node, '.ct-reason').value).toBe('typing a reason');
    expect(input(form.node, '.ct-idempotency-key').value).toBe('my-key-1');
  });

  it('rebuilt for changed pipelines, keeps the chosen pipeline, typed values, reason and key', () => {
    const form = new RunFormSection(context());
    form.setPipelines(pipelines());
    const batch = input(form.node, '[data-param="score.batch"]');
    batch.value = 'batch-07.csv';
    batch.dispatchEvent(new Event('input'));
    input(form.node, '.ct-reason').value = 'why';
    input(form.node, '.ct-idempotency-key').value = 'my-key-2';
    expect(form.setPipelines(pipelines([{ name: EVIL, default: '3' }]))).toBe(true);
    expect(form.builds).toBe(2);
    expect(input(form.node, '[data-param="score.batch"]').value).toBe('batch-07.csv');
    expect(input(form.node, '.ct-reason').value).toBe('why');
    expect(input(form.node, '.ct-idempotency-key').value).toBe('my-key-2');
    // a parameter name is text, never markup
    expect(form.node.querySelector('img')).toBeNull();
    expect(form.node.textContent).toContain(EVIL);
  });

  it('starts with the typed key and only the changed parameters, then takes a fresh key', async () => {
    const calls: { body: unknown; key: string }[] = [];
    const ctx = context({
      startRun: async (body, key) => {
        calls.push({ body, key });
        return { run_id: 'r1', status: 'queued' };
      }
    });
    const form = new RunFormSection(ctx);
    form.setPipelines(pipelines());
    const batch = input(form.node, '[data-param="score.batch"]');
    batch.value = '"b.csv"';
    input(form.node, '.ct-reason').value = 'retry';
    input(form.node, '.ct-idempotency-key').value = 'ctn-key-3';
    (form.node.querySelector('.ct-start') as HTMLButtonElement).click();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(calls).toEqual([
      { body: { pipeline: 'monitor', parameters: { score: { batch: 'b.csv' } }, reason: 'retry' }, key: 'ctn-key-3' }
    ]);
    expect(ctx.expanded).toEqual(['r1']);
    expect(input(form.node, '.ct-idempotency-key').value).not.toBe('ctn-key-3');
  });
});

describe('Models section', () => {
  it("shows the champion's primary metric from the ct.metric tag", () => {
    const models: IModels = {
      model: 'credit-default',
      primary_metric: 'roc_auc',
      aliases: { champion: 2 },
      versions: [
        {
          version: 2,
          aliases: ['champion'],
          metrics: { train_roc_auc: 0.9 },
          tags: { 'ct.metric.roc_auc': '0.6657131960335622' },
          gate: 'passed',
          gate_reason: EVIL,
          ct_run_id: null,
          created_at: ''
        },
        {
          version: 1,
          aliases: [],
          metrics: { roc_auc: 0.61 },
          gate: null,
          gate_reason: null,
          ct_run_id: null,
          created_at: ''
        }
      ],
      audit: []
    };
    const section = new ModelsSection(context());
    section.render({ status: 'fulfilled', value: models });
    const metrics = Array.from(section.node.querySelectorAll('.ct-metric')).map(td => td.textContent);
    expect(metrics).toEqual(['0.6657', '0.6100']);
    expect(section.node.querySelector('tr[data-version="2"] .ct-champion')).not.toBeNull();
    expect(section.node.querySelector('img')).toBeNull();
  });
});

describe('Runs section', () => {
  it('renders run ids, reasons and errors as text', async () => {
    const run = {
      run_id: EVIL,
      pipeline: 'train',
      status: 'failed' as const,
      outcome: 'none' as const,
      outcome_reason: EVIL,
      version: null,
      trigger: 'manual',
      reason: EVIL,
      created_at: null,
      started_at: null,
      ended_at: null,
      duration_s: 3,
      failed_stage: null,
      error: EVIL,
      stages: []
    };
    const section = new RunsSection(
      context({ runs: async () => ({ runs: [run], limit: 30, offset: 0, has_more: false }) })
    );
    section.setPipelines(['train', EVIL]);
    await section.load();
    expect(section.node.querySelectorAll('.ct-run')).toHaveLength(1);
    expect(section.node.querySelector('.ct-run')!.getAttribute('data-run-id')).toBe(EVIL);
    expect(section.node.querySelector('.ct-run-trigger')!.textContent).toBe(`manual: ${EVIL}`);
    expect(section.node.querySelector('img')).toBeNull();
  });
});

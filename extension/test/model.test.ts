import {
  decisionText,
  formatDuration,
  formatMetric,
  formatShare,
  initialText,
  isResumable,
  newIdempotencyKey,
  outcomeText,
  parseValue,
  quarantineLines,
  sparkline,
  startRunBody,
  statusIcon,
  typeLabel,
  versionMetric
} from '../src/model';

describe('formatting', () => {
  it('formats durations', () => {
    expect(formatDuration(null)).toBe('–');
    expect(formatDuration(3.21)).toBe('3.2 s');
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(125)).toBe('2 min 5 s');
    expect(formatDuration(7300)).toBe('2 h 1 min');
  });
  it('formats shares, outcomes, icons', () => {
    expect(formatShare(0.254)).toBe('25%');
    expect(formatShare(null)).toBe('–');
    expect(outcomeText({ outcome: 'promoted', version: 3 })).toBe('v3 promoted');
    expect(outcomeText({ outcome: 'rejected', version: null })).toBe('rejected');
    expect(outcomeText({ outcome: 'none', version: null })).toBe('');
    expect(statusIcon('succeeded')).toBe('✔');
    expect(statusIcon('weird')).toBe('?');
    expect(statusIcon('damaged')).toBe('⚠');
  });
  it('knows resumable runs', () => {
    expect(isResumable({ status: 'failed' })).toBe(true);
    expect(isResumable({ status: 'blocked' })).toBe(true);
    expect(isResumable({ status: 'succeeded' })).toBe(false);
    expect(isResumable({ status: 'running' })).toBe(false);
    expect(isResumable({ status: 'damaged' })).toBe(false); // unreadable run.json: nothing to resume from
  });
});

describe('run form', () => {
  it('parses JSON values and keeps other text as strings', () => {
    expect(parseValue('0.3')).toBe(0.3);
    expect(parseValue('null')).toBeNull();
    expect(parseValue('[1, 2]')).toEqual([1, 2]);
    expect(parseValue('batch-01.csv')).toBe('batch-01.csv');
    expect(parseValue('"quoted"')).toBe('quoted');
  });
  it('starts fields from ct.yaml values, else notebook defaults', () => {
    const spec = { name: 'x', type: 'float', help: '', default: '0.2', configured: null };
    expect(initialText(spec)).toBe('0.2');
    expect(initialText({ ...spec, configured: '0.5' })).toBe('0.5');
    expect(initialText({ ...spec, default: 'None' })).toBe('null');
    expect(initialText({ ...spec, default: 'True' })).toBe('true');
    expect(initialText({ ...spec, default: "'batch.csv'" })).toBe('"batch.csv"');
  });
  it('sends only changed fields', () => {
    const body = startRunBody(
      'monitor',
      [
        { stage: 'score', name: 'batch', initial: 'null', text: 'batch-01.csv' },
        { stage: 'drift', name: 'drift_report', initial: 'true', text: 'true' },
        { stage: 'drift', name: 'share_threshold', initial: 'null', text: ' 0.4 ' }
      ],
      '  why  '
    );
    expect(body).toEqual({
      pipeline: 'monitor',
      parameters: { score: { batch: 'batch-01.csv' }, drift: { share_threshold: 0.4 } },
      reason: 'why'
    });
    expect(startRunBody('train', [], '')).toEqual({ pipeline: 'train' });
  });
  it('makes distinct idempotency keys', () => {
    expect(newIdempotencyKey()).not.toBe(newIdempotencyKey());
  });
});

describe('sparkline', () => {
  it('scales shares into the box', () => {
    expect(sparkline([], 100, 10)).toBe('');
    expect(sparkline([0, 1], 100, 10)).toBe('0.0,10.0 100.0,0.0');
    expect(sparkline([2], 100, 10)).toBe('0.0,0.0');
  });
});

describe('data gate', () => {
  it('lists quarantined batches with where they went and why', () => {
    const stages = [
      {
        outputs: {
          quarantined: [
            { batch: 'b4.csv', moved_to: 'data/quarantine/b4.csv', violations: ["column 'x' is missing", 'more'] }
          ]
        }
      },
      { outputs: { quarantined: [{ batch: 'b5.csv', moved_to: null, violations: [] }] } },
      { outputs: { warnings: ['w'] } },
      {}
    ];
    expect(quarantineLines(stages)).toEqual([
      "batch b4.csv quarantined (moved to data/quarantine/b4.csv): column 'x' is missing",
      'batch b5.csv quarantined (kept out of the run): failed the data gate'
    ]);
  });
  it('says how a triggered run ended, not just that it started', () => {
    const blocked = {
      evaluated_at: 't',
      trigger: 'drift',
      fired: true,
      action: 'started',
      reason: 'share 0.5',
      run: { status: 'blocked', text: "blocked at validate: batch b4.csv: column 'x' is missing" }
    };
    expect(decisionText(blocked)).toBe(
      "t drift: fired, started share 0.5 → run blocked at validate: batch b4.csv: column 'x' is missing"
    );
    expect(decisionText({ evaluated_at: 't', trigger: 'cron', fired: false, reason: 'quiet', run: null })).toBe(
      't cron: not fired quiet'
    );
  });
});

describe('models table and run form labels', () => {
  it('reads the primary metric from metrics, else from the ct.metric tag', () => {
    expect(versionMetric({ metrics: { roc_auc: 0.71 } }, 'roc_auc')).toBe(0.71);
    // what the server sent before it merged the gate's holdout metrics: train_* only, the metric as a tag
    const v = { metrics: { train_roc_auc: 0.91 }, tags: { 'ct.metric.roc_auc': '0.6657131960335622' } };
    expect(versionMetric(v, 'roc_auc')).toBeCloseTo(0.6657, 4);
    expect(formatMetric(versionMetric(v, 'roc_auc'))).toBe('0.6657');
    expect(versionMetric({ metrics: {}, tags: { 'ct.metric.roc_auc': 'nan' } }, 'roc_auc')).toBeNull();
    expect(versionMetric({ metrics: { roc_auc: null } }, 'roc_auc')).toBeNull();
    expect(formatMetric(versionMetric({ metrics: {} }, 'roc_auc'))).toBe('–');
  });

  it('shows no type for a parameter papermill inferred none for', () => {
    expect(typeLabel({ type: 'None' })).toBe('');
    expect(typeLabel({ type: '' })).toBe('');
    expect(typeLabel({ type: 'int' })).toBe('int');
  });
});

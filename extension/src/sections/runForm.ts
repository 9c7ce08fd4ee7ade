/**
 * Run: start a pipeline with parameters, a reason and an idempotency key.
 *
 * The form is built once per shape of the pipelines (names, stages, parameters): a refresh that
 * brings the same pipelines leaves it alone, so what someone is typing stays. When the pipelines do
 * change, the rebuilt form keeps the chosen pipeline, the reason, the key and every typed value whose
 * parameter still exists.
 */

import type { IProject } from '../api';
import { button, el } from '../dom';
import { initialText, newIdempotencyKey, startRunBody, typeLabel } from '../model';
import { IPanelContext, Section } from './section';

export type Pipelines = NonNullable<IProject['pipelines']>;

interface IField {
  stage: string;
  name: string;
  initial: string;
  input: HTMLInputElement;
}

export class RunFormSection extends Section {
  private shape: string | null = null;
  private pipelines: Pipelines = [];
  private fields: IField[] = [];
  /** values the user changed, by "pipeline/stage.name" (kept across pipeline switches and rebuilds) */
  private readonly typed = new Map<string, string>();
  private readonly select = el('select', { class: 'jp-mod-styled ct-pipeline', title: 'pipeline' });
  private readonly fieldsBox = el('div', { class: 'ct-fields' });
  private readonly reason = el('input', { class: 'jp-mod-styled ct-reason', placeholder: 'reason (optional)' });
  private readonly key = el('input', {
    class: 'jp-mod-styled ct-idempotency-key',
    title: 'Idempotency-Key: a repeated start with the same key does not start a second run'
  });
  /** how many times the form was (re)built: what tests and people can check */
  builds = 0;

  constructor(ctx: IPanelContext) {
    super('run', 'Run', ctx);
    this.key.value = newIdempotencyKey();
    this.select.addEventListener('change', () => this.buildFields());
    const start = button('Start run', () => void this.start(), 'jp-mod-accept ct-start');
    this.body.append(
      el('label', {}, 'Pipeline ', this.select),
      this.fieldsBox,
      this.reason,
      el('label', { class: 'ct-key-label' }, el('span', { class: 'ct-muted' }, 'idempotency key '), this.key),
      start
    );
  }

  /** Rebuild only when the pipelines or their parameters changed; true when it rebuilt. */
  setPipelines(pipelines: Pipelines): boolean {
    const shape = JSON.stringify(pipelines);
    if (shape === this.shape) {
      return false;
    }
    this.shape = shape;
    this.pipelines = pipelines;
    const chosen = this.select.value;
    this.select.replaceChildren();
    for (const p of pipelines) {
      this.select.append(el('option', { value: p.name }, p.name));
    }
    if (pipelines.some(p => p.name === chosen)) {
      this.select.value = chosen;
    }
    this.buildFields();
    this.builds++;
    return true;
  }

  private buildFields(): void {
    const pipelineName = this.select.value;
    const pipeline = this.pipelines.find(p => p.name === pipelineName);
    this.fields = [];
    this.fieldsBox.replaceChildren();
    for (const stage of pipeline?.stages ?? []) {
      if (stage.parameters.length === 0) {
        continue;
      }
      const group = el('fieldset', { class: 'ct-stage-params' }, el('legend', {}, stage.name));
      for (const spec of stage.parameters) {
        const initial = initialText(spec);
        const id = `${pipelineName}/${stage.name}.${spec.name}`;
        const input = el('input', {
          class: 'jp-mod-styled ct-param',
          'data-param': `${stage.name}.${spec.name}`,
          title: spec.help || typeLabel(spec)
        });
        input.value = this.typed.get(id) ?? initial;
        input.addEventListener('input', () => {
          if (input.value === initial) {
            this.typed.delete(id);
          } else {
            this.typed.set(id, input.value);
          }
        });
        this.fields.push({ stage: stage.name, name: spec.name, initial, input });
        const type = typeLabel(spec);
        group.append(
          el(
            'label',
            {},
            el('span', {}, `${spec.name} `, type ? el('small', { class: 'ct-muted ct-param-type' }, type) : null),
            input
          )
        );
      }
      this.fieldsBox.append(group);
    }
  }

  private async start(): Promise<void> {
    const client = this.ctx.client;
    await this.ctx.act(async () => {
      const payload = startRunBody(
        this.select.value,
        this.fields.map(f => ({ stage: f.stage, name: f.name, initial: f.initial, text: f.input.value })),
        this.reason.value
      );
      const key = this.key.value.trim() || newIdempotencyKey();
      const started = await client.startRun(payload, key);
      // the next click is a new run: a fresh key (a failed start keeps the key, so a retry is deduplicated)
      this.key.value = newIdempotencyKey();
      this.ctx.expandRun(started.run_id);
    });
  }
}

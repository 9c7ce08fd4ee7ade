/** Models: registered versions with the primary metric and gate verdict, promote / roll back, alias audit. */

import type { IModels } from '../api';
import { button, el } from '../dom';
import { formatMetric, versionMetric } from '../model';
import { Section, IPanelContext } from './section';

export class ModelsSection extends Section {
  constructor(ctx: IPanelContext) {
    super('models', 'Models', ctx);
  }

  render(result: PromiseSettledResult<IModels>): void {
    const models = this.settled(result, 'Registry unavailable: ');
    if (models === null) {
      return;
    }
    const body = this.body;
    if (models.versions.length === 0) {
      body.replaceChildren(el('p', { class: 'ct-empty' }, `No versions of ${models.model} yet.`));
      return;
    }
    const client = this.ctx.client;
    const table = el(
      'table',
      { class: 'ct-table ct-versions' },
      el('tr', {}, el('th', {}, 'version'), el('th', {}, models.primary_metric), el('th', {}, 'gate'), el('th', {}, ''))
    );
    for (const v of models.versions) {
      const champion = v.aliases.includes('champion');
      const row = el(
        'tr',
        { 'data-version': String(v.version) },
        el(
          'td',
          {},
          `v${v.version} `,
          champion ? el('span', { class: 'ct-badge ct-champion' }, 'champion') : null,
          v.aliases.includes('contender') ? el('span', { class: 'ct-badge' }, 'contender') : null
        ),
        el('td', { class: 'ct-metric' }, formatMetric(versionMetric(v, models.primary_metric))),
        el('td', { title: v.gate_reason ?? '' }, v.gate ?? '–'),
        el(
          'td',
          {},
          champion
            ? null
            : button(
                'Promote',
                () =>
                  void this.confirmThen(`Make v${v.version} the champion?`, v.gate_reason ?? '', () =>
                    client.promote(v.version)
                  ),
                'ct-promote'
              )
        )
      );
      table.append(row);
    }
    const rollback = button(
      'Roll back champion',
      () => void this.confirmThen('Move champion back to the previous champion?', '', () => client.rollback()),
      'jp-mod-warn ct-rollback'
    );
    const audit = el('ul', { class: 'ct-audit' });
    for (const move of models.audit.slice(0, 8)) {
      audit.append(
        el(
          'li',
          {},
          `${move.at.slice(0, 19).replace('T', ' ')} ${move.alias}: v${move.from_version ?? '–'} → v${move.to_version ?? '–'} by ${move.actor} (${move.action}) ${move.reason}`
        )
      );
    }
    body.replaceChildren(table, rollback, el('div', { class: 'ct-subtitle' }, 'Who moved the alias'), audit);
  }

  private async confirmThen(title: string, detail: string, action: () => Promise<unknown>): Promise<void> {
    if (await this.ctx.confirm(title, detail || 'The alias move is recorded in the audit log.')) {
      await this.ctx.act(action);
    }
  }
}

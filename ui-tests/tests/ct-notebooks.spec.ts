import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import * as path from 'path';

/** Screenshots of each panel, light and dark, kept as test artifacts (gitignored). */
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'ui-tests');
const SECTIONS = ['runs', 'run', 'models', 'drift', 'schedule', 'pipeline'];

test.use({ autoGoto: true });

async function openPanel(page: IJupyterLabPageFixture): Promise<void> {
  await page.sidebar.openTab('ct-notebooks-panel');
  await expect(page.locator('#ct-notebooks-panel .ct-project-name')).toContainText('credit-default');
}

async function confirm(page: IJupyterLabPageFixture): Promise<void> {
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog).toBeVisible();
  await dialog.locator('.jp-mod-accept').click();
  await expect(dialog).toHaveCount(0);
}

/** Save one of the sidebar's settings through JupyterLab's setting registry (null: back to the default). */
async function setSetting(page: IJupyterLabPageFixture, key: string, value: number | null): Promise<void> {
  await page.evaluate(
    async ([k, v]) => {
      const registry: any = await (window as any).galata.getPlugin('@jupyterlab/apputils-extension:settings');
      if (v === null) {
        await registry.remove('ct-notebooks:plugin', k);
      } else {
        await registry.set('ct-notebooks:plugin', k, v);
      }
    },
    [key, value] as [string, number | null]
  );
}

async function screenshots(page: IJupyterLabPageFixture, theme: string): Promise<void> {
  for (const name of SECTIONS) {
    await page
      .locator(`#ct-notebooks-panel .ct-section-${name}`)
      .screenshot({ path: path.join(ARTIFACTS, `${name}-${theme}.png`) });
  }
  const panel = page.locator('#ct-notebooks-panel');
  await panel.evaluate(node => node.scrollTo(0, 0)); // the panel from its top: runs first
  await panel.screenshot({ path: path.join(ARTIFACTS, `panel-${theme}.png`) });
}

test.describe.serial('Continuous Training sidebar', () => {
  test('shows the demo runs, models, drift and schedule', async ({ page }) => {
    await openPanel(page);
    const runs = page.locator('#ct-notebooks-panel .ct-run');
    await expect(runs.first()).toBeVisible();
    expect(await runs.count()).toBeGreaterThanOrEqual(3);
    await expect(page.locator('.ct-run[data-status="succeeded"] .ct-run-outcome').first()).toContainText('promoted');
    await expect(page.locator('.ct-versions tr[data-version="2"] .ct-champion')).toBeVisible();
    await expect(page.locator('.ct-batches tr')).not.toHaveCount(0);
    await expect(page.locator('.ct-columns tr').nth(1)).toBeVisible();
    await expect(page.locator('.ct-daemon')).toContainText('Daemon');
    // the pipeline track: the working copy's version (the demo project deploys none)
    const track = page.locator('#ct-notebooks-panel .ct-section-pipeline');
    await expect(track.locator('.ct-track-working td')).toHaveText(/^[0-9a-f]{8,}/);
    await expect(track.locator('.ct-track-state')).toHaveAttribute('data-state', /^(undeployed|differs|same)$/);
    await expect(track.locator('.ct-checks, .ct-no-checks')).toBeVisible();
    // costs: the demo's train runs, totalled
    const cost = page.locator('#ct-notebooks-panel .ct-section-cost');
    await expect(cost.locator('.ct-cost-pipeline tr[data-name="train"] td').nth(1)).toHaveText(/^[1-9][0-9]*$/);
    await expect(cost.locator('.ct-cost-day li[data-name="train"]')).toContainText('run(s)');
    await screenshots(page, 'light');
    await page.theme.setDarkTheme();
    await openPanel(page);
    await screenshots(page, 'dark');
    await page.theme.setLightTheme();
  });

  test('keeps what is typed in the Run form across full refreshes', async ({ page }) => {
    // a full refresh (project, models, drift, schedule) is the one that asks for the project
    let fullRefreshes = 0;
    page.on('response', response => {
      if (new URL(response.url()).pathname.endsWith('/ct-notebooks/api/project')) {
        fullRefreshes++;
      }
    });
    await openPanel(page);
    await setSetting(page, 'refreshSeconds', 1); // a full refresh every 5 s instead of 15
    const form = page.locator('#ct-notebooks-panel .ct-section-run');
    await form.locator('.ct-pipeline').selectOption('monitor');
    // no Python "None" printed under the parameter names
    await expect(form.locator('.ct-fields')).toBeVisible();
    await expect(form.locator('.ct-fields')).not.toContainText('None');
    const typed: [string, string][] = [
      ['[data-param="score.batch"]', 'batch-typed.csv'],
      ['[data-param="score.threshold"]', '0.7'],
      ['.ct-reason', 'typed while the sidebar polls'],
      ['.ct-idempotency-key', 'ctn-typed-key-0001']
    ];
    for (const [selector, value] of typed) {
      await form.locator(selector).fill(value);
    }
    const before = fullRefreshes;
    await expect.poll(() => fullRefreshes, { timeout: 90000, intervals: [250] }).toBeGreaterThanOrEqual(before + 2);
    await expect(form.locator('.ct-pipeline')).toHaveValue('monitor');
    for (const [selector, value] of typed) {
      await expect(form.locator(selector)).toHaveValue(value);
    }
    await setSetting(page, 'refreshSeconds', null);
    // the champion's primary metric (a version tag) is shown, not "–"
    await expect(page.locator('.ct-versions tr[data-version="2"] .ct-metric')).toHaveText(/^\d\.\d{4}$/);
  });

  test('starts a run, watches it finish and opens its notebook', async ({ page }) => {
    await openPanel(page);
    const before = await page.locator('.ct-run').count();
    await page.locator('.ct-pipeline').selectOption('monitor');
    await page.locator('[data-param="score.batch"]').fill('batch-01.csv');
    await page.locator('.ct-reason').fill('from the UI test');
    await page.locator('.ct-start').click();
    const row = page.locator('.ct-run', { hasText: 'from the UI test' }).first();
    await expect(row).toBeVisible({ timeout: 60000 });
    await expect(row).toHaveAttribute('data-status', 'succeeded', { timeout: 200000 });
    expect(await page.locator('.ct-run').count()).toBeGreaterThan(before);
    // the started run is expanded: its stages list opens the executed notebooks
    const open = page.locator('.ct-run-detail .ct-open-notebook').first();
    await expect(open).toBeVisible();
    await open.click();
    await expect(page.locator('.jp-NotebookPanel').first()).toBeVisible();
    await expect(page.locator('.jp-MainAreaWidget .lm-TabBar-tabLabel, .lm-DockPanel-tabBar .lm-TabBar-tabLabel').filter({ hasText: '01-score.ipynb' }).first()).toBeVisible();
  });

  test('filters runs and pages them by the runs-per-page setting', async ({ page }) => {
    await openPanel(page);
    const runs = page.locator('#ct-notebooks-panel .ct-run');
    const total = await runs.count();
    expect(total).toBeGreaterThanOrEqual(3);
    await page.locator('.ct-filter-pipeline').selectOption('monitor');
    await expect(runs.first()).toBeVisible();
    await expect(page.locator('.ct-run .ct-run-pipeline').filter({ hasNotText: 'monitor' })).toHaveCount(0);
    await page.locator('.ct-filter-status').selectOption('cancelled');
    await expect(page.locator('.ct-run-list .ct-empty')).toContainText('No runs match');
    await page.locator('.ct-filter-status').selectOption('');
    await page.locator('.ct-filter-pipeline').selectOption('');
    await expect(runs).toHaveCount(total);

    // the user's setting, saved through JupyterLab's setting registry, reaches the open sidebar
    const setPageSize = (size: number | null) => setSetting(page, 'runsPageSize', size);
    await setPageSize(2);
    await expect(runs).toHaveCount(2);
    await page.locator('.ct-more-runs').click();
    await expect(runs).toHaveCount(Math.min(4, total));
    await setPageSize(null);
    await expect(runs).toHaveCount(total);
    await expect(page.locator('.ct-more-runs')).toHaveCount(0);
  });

  test('rolls back and promotes behind a confirmation', async ({ page }) => {
    await openPanel(page);
    await page.locator('.ct-rollback').click();
    await confirm(page);
    await expect(page.locator('.ct-versions tr[data-version="1"] .ct-champion')).toBeVisible();
    await expect(page.locator('.ct-audit li').first()).toContainText('rollback');
    await page.locator('.ct-versions tr[data-version="2"] .ct-promote').click();
    await confirm(page);
    await expect(page.locator('.ct-versions tr[data-version="2"] .ct-champion')).toBeVisible();
    await expect(page.locator('.ct-audit li').first()).toContainText('promote');
  });

  test('opens a drift report in a sandboxed tab', async ({ page }) => {
    await openPanel(page);
    await page.locator('.ct-batches .ct-open-report').first().click();
    const frame = page.locator('.ct-report-frame iframe');
    await expect(frame).toBeVisible();
    await expect(frame).toHaveAttribute('sandbox', 'allow-scripts');
    await expect(page.frameLocator('.ct-report-frame iframe').locator('body')).not.toBeEmpty({ timeout: 30000 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'drift-report.png') });
  });
});

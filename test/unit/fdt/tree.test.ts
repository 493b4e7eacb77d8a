import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findNode, getOrCreateNode, newNode, parseFdt } from '../../../src/fdt/fdt.ts';
import { qemuVirtDtb } from './fixtures.ts';

test('findNode: exact names, unit-address-less components, root', () => {
  const root = parseFdt(qemuVirtDtb(), 'virt.dtb').root;
  assert.equal(findNode(root, '/'), root);
  assert.equal(findNode(root, '/chosen')!.name, 'chosen');
  assert.equal(findNode(root, '/memory')!.name, 'memory@40000000');
  assert.equal(findNode(root, '/memory@40000000')!.name, 'memory@40000000');
  assert.equal(findNode(root, '/intc/v2m')!.name, 'v2m@8020000');
  assert.equal(findNode(root, '/cpus/cpu@0/')!.name, 'cpu@0');
  assert.equal(findNode(root, '/memory@40000001'), undefined);
  assert.equal(findNode(root, '/chosen/nothing'), undefined);
  assert.equal(findNode(root, '/mem'), undefined, 'a prefix is not a name');
  assert.throws(() => findNode(root, 'chosen'), TypeError);
});

test('findNode prefers an exact name over a unit-address match', () => {
  const root = newNode('');
  const withAddr = newNode('cpu@0');
  const exact = newNode('cpu');
  root.children.push(withAddr, exact);
  assert.equal(findNode(root, '/cpu'), exact);
});

test('getOrCreateNode returns existing nodes and creates missing ones', () => {
  const root = newNode('');
  const chosen = getOrCreateNode(root, '/chosen');
  assert.deepEqual(root.children, [{ name: 'chosen', props: new Map(), children: [] }]);
  assert.equal(getOrCreateNode(root, '/chosen'), chosen);
  const deep = getOrCreateNode(root, '/a/b/c');
  assert.equal(findNode(root, '/a/b/c'), deep);
  assert.equal(root.children.length, 2);
  assert.equal(getOrCreateNode(root, '/'), root);
});

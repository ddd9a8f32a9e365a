import { Model, snakeCaseMappers } from 'objection';

/** Columns are snake_case in PostgreSQL and camelCase on models. Queries always pass their knex explicitly. */
export class BaseModel extends Model {
  static override get columnNameMappers() {
    return snakeCaseMappers();
  }
}
